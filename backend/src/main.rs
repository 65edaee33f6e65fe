//! `vitalcore-server serve`: runs the API and the metrics listener on embedded defaults (SQLite
//! and a local archive under the data dir) unless configured otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vitalcore_server::config::Mode;
use vitalcore_server::{router, serve, AppState, Config};

#[derive(Parser)]
#[command(
    name = "vitalcore-server",
    version,
    about = "Minimal vitalcore backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Layers: defaults < TOML file < VITALCORE_* env < these flags.
    Serve {
        /// TOML configuration file (also VITALCORE_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
        /// API listen address.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Metrics listen address.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Admin listen address (admin routes; never on the API listener).
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Data directory (embedded database and archive).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// `sqlite://...` or `postgres://...`.
        #[arg(long)]
        database_url: Option<String>,
        /// Region this node serves.
        #[arg(long)]
        region: Option<String>,
        /// Development mode: may create a signing key under the data dir (and says so).
        #[arg(long)]
        dev: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let Cli { command } = Cli::parse();
    let Command::Serve {
        config,
        listen,
        metrics_listen,
        admin_listen,
        data_dir,
        database_url,
        region,
        dev,
    } = command;
    let config_path = config.or_else(|| std::env::var_os("VITALCORE_CONFIG").map(PathBuf::from));
    let mut cfg = match config_path {
        Some(p) => match Config::from_file(&p) {
            Ok(c) => c,
            Err(e) => return fail(&e),
        },
        None => Config::default(),
    };
    if let Err(e) = cfg.apply_env(|k| std::env::var(k).ok()) {
        return fail(&e);
    }
    if let Some(v) = listen {
        cfg.listen = v;
    }
    if let Some(v) = metrics_listen {
        cfg.metrics_listen = v;
    }
    if let Some(v) = admin_listen {
        cfg.admin_listen = v;
    }
    if let Some(v) = data_dir {
        cfg.data_dir = v;
    }
    if let Some(v) = database_url {
        cfg.database_url = Some(v);
    }
    if let Some(v) = region {
        cfg.region = v;
    }
    if dev {
        cfg.mode = Mode::Dev;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.as_ref()),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!(error = %e, "vitalcore-server failed");
    ExitCode::FAILURE
}

async fn run(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    tracing::info!(config = ?cfg, "starting");
    let (listen, metrics_listen, admin_listen) = (cfg.listen, cfg.metrics_listen, cfg.admin_listen);
    let admin_enabled = cfg.admin_token.is_some();
    let state = AppState::open(cfg).await?;
    let api = tokio::net::TcpListener::bind(listen).await?;
    let metrics = tokio::net::TcpListener::bind(metrics_listen).await?;
    // The admin plane has its own listener (loopback by default) and only with an admin token.
    let admin = match admin_enabled {
        true => Some(tokio::net::TcpListener::bind(admin_listen).await?),
        false => None,
    };
    let admin_addr = match &admin {
        Some(l) => l.local_addr()?.to_string(),
        None => "off".to_owned(),
    };
    tracing::info!(api = %api.local_addr()?, metrics = %metrics.local_addr()?, admin = %admin_addr, "listening");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let admin_task = admin.map(|listener| {
        let mut rx3 = rx.clone();
        tokio::spawn(serve(
            listener,
            vitalcore_server::admin_router(state.clone()),
            async move {
                let _ = rx3.wait_for(|v| *v).await;
            },
        ))
    });
    let mut rx2 = rx.clone();
    let metrics_task = tokio::spawn(serve(
        metrics,
        vitalcore_server::metrics::router(),
        async move {
            let _ = rx2.wait_for(|v| *v).await;
        },
    ));
    let mut rx1 = rx;
    let api_task = tokio::spawn(serve(api, router(state), async move {
        let _ = rx1.wait_for(|v| *v).await;
    }));
    shutdown_signal().await;
    tracing::info!("shutdown requested; finishing in-flight requests");
    let _ = tx.send(true);
    api_task.await??;
    metrics_task.await??;
    if let Some(t) = admin_task {
        t.await??;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
