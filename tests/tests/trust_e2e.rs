//! The server's trust boundary as devices meet it (SQLite and PostgreSQL): a subject's data
//! can be erased only with the proof derived from its pseudonym key, which another enrolled
//! device does not have and a reinstalled app (same key, new credential) still has.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::*;
use vitalcore::sync::SyncError;
use vitalcore_protocol::ConsentPurpose;

async fn only_the_key_holder_erases(db: Db) {
    let server = Server::start(db, "eu").await;
    let mut a = Device::new(1, &server, server.url(), fast).await;
    let b = Device::new(2, &server, server.url(), fast).await;
    a.consent(&training(), true);
    a.enqueue(&training(), 4);
    a.client.sync_now().await.unwrap();
    assert_eq!(server.records(ConsentPurpose::ModelTraining).await.len(), 4);

    // B is enrolled and knows A's pseudonym (say, from a leaked export), but its proof comes
    // from its own key: refused, nothing erased.
    let a_pseudonym = a.pseudonym(&training());
    assert!(matches!(
        b.client.send_erasure(&a_pseudonym).await,
        Err(SyncError::Unauthorized)
    ));
    assert!(matches!(
        b.client.send_erasure_proved(&a_pseudonym, None).await,
        Err(SyncError::Unauthorized)
    ));
    assert_eq!(server.records(ConsentPurpose::ModelTraining).await.len(), 4);

    // A reinstalls: the store (and its pseudonym key) is restored, the credential is new.
    a.credential = server.enroll().await;
    a.reopen();
    let receipt = a.client.request_erasure(&training()).await.unwrap();
    assert_eq!(receipt.records_deleted, 4);
    assert!(server
        .records(ConsentPurpose::ModelTraining)
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_key_holder_erases_sqlite() {
    only_the_key_holder_erases(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_key_holder_erases_postgres() {
    only_the_key_holder_erases(Db::Postgres).await;
}
