//! Abuse limits: a GCRA rate limit per client IP on enrollment and per device credential on
//! every device route (the `governor` crate), and a cap on the batch writes one device may
//! have in flight, so no device can take every ingest slot. Refusals are 429 + `Retry-After`.
//!
//! The limits are per process: with N nodes behind a balancer a client gets up to N times the
//! quota (the balancer or API Gateway throttling is the fleet-wide bound).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Config;
use crate::error::ApiError;

/// The limiters of one process.
pub struct Limits {
    enroll: DefaultKeyedRateLimiter<IpAddr>,
    device: DefaultKeyedRateLimiter<[u8; 32]>,
    inflight: Arc<Mutex<HashMap<String, usize>>>,
    max_inflight_per_device: usize,
    trust_forwarded_for: bool,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("max_inflight_per_device", &self.max_inflight_per_device)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .finish_non_exhaustive()
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn refusal(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
    }
}

impl Limits {
    /// Limits as configured.
    pub fn new(c: &Config) -> Self {
        let enroll = Quota::per_minute(nz(c.enroll_per_minute)).allow_burst(nz(c.enroll_burst));
        let device = Quota::per_minute(nz(c.device_per_minute)).allow_burst(nz(c.device_burst));
        Self {
            enroll: DefaultKeyedRateLimiter::keyed(enroll),
            device: DefaultKeyedRateLimiter::keyed(device),
            inflight: Arc::default(),
            max_inflight_per_device: c.max_inflight_per_device.max(1),
            trust_forwarded_for: c.trust_forwarded_for,
        }
    }

    /// The client IP of a request: the TCP peer, or with `trust_forwarded_for` the last
    /// `X-Forwarded-For` entry (appended by the proxy in front). Without either (a request
    /// handed to the router in-process) all such requests share one bucket.
    pub fn client_ip(&self, parts: &Parts) -> IpAddr {
        if self.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .next_back();
            if let Some(ip) = forwarded {
                return ip;
            }
        }
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// One enrollment from `ip`, or 429.
    pub fn check_enroll(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.enroll
            .check_key(&ip)
            .map_err(|nu| refusal(nu.wait_time_from(self.enroll.clock().now())))
    }

    /// One request with the credential whose sha256 is `credential_hash`, or 429. Checked
    /// before the credential is looked up, so unknown and revoked credentials are limited too.
    pub fn check_device(&self, credential_hash: [u8; 32]) -> Result<(), ApiError> {
        self.device
            .check_key(&credential_hash)
            .map_err(|nu| refusal(nu.wait_time_from(self.device.clock().now())))
    }

    /// A batch-write slot of `device_id` (released on drop), or 429 when the device already
    /// has `max_inflight_per_device` batches in flight.
    pub fn device_slot(&self, device_id: &str, retry_after: u64) -> Result<DeviceSlot, ApiError> {
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(device_id.to_owned()).or_insert(0);
        if *n >= self.max_inflight_per_device {
            return Err(ApiError::RateLimited { retry_after });
        }
        *n += 1;
        Ok(DeviceSlot {
            map: self.inflight.clone(),
            device_id: device_id.to_owned(),
        })
    }

    /// Forgets the state of keys whose limit has fully recovered (bounds memory).
    pub fn housekeeping(&self) {
        self.enroll.retain_recent();
        self.device.retain_recent();
        self.enroll.shrink_to_fit();
        self.device.shrink_to_fit();
    }
}

/// One of a device's batch-write slots; released on drop.
#[derive(Debug)]
pub struct DeviceSlot {
    map: Arc<Mutex<HashMap<String, usize>>>,
    device_id: String,
}

impl Drop for DeviceSlot {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.device_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.device_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_limited_and_say_when_to_retry() {
        let c = Config {
            enroll_burst: 3,
            enroll_per_minute: 6,
            ..Config::default()
        };
        let l = Limits::new(&c);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            l.check_enroll(ip).unwrap();
        }
        match l.check_enroll(ip) {
            Err(ApiError::RateLimited { retry_after }) => assert!((1..=10).contains(&retry_after)),
            other => panic!("{other:?}"),
        }
        l.check_enroll("192.0.2.8".parse().unwrap()).unwrap();
    }

    #[test]
    fn device_slots_are_capped_and_released() {
        let c = Config {
            max_inflight_per_device: 2,
            ..Config::default()
        };
        let l = Limits::new(&c);
        let a = l.device_slot("a", 1).unwrap();
        let _b = l.device_slot("a", 1).unwrap();
        assert!(l.device_slot("a", 1).is_err());
        let _other = l.device_slot("z", 1).unwrap();
        drop(a);
        let _c = l.device_slot("a", 1).unwrap();
    }
}
