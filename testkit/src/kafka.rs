//! librdkafka's in-process mock cluster, for tests that need Kafka: it
//! speaks the real protocol on a local port, so a `herald` child process
//! can reach it as it would a real cluster. Created through rdkafka-sys
//! because rdkafka's `MockCluster` does not expose the handle needed to
//! shorten the group timings or to make the broker refuse requests. It has
//! no CreateTopics: tests make their topics here. (Taking a partition's
//! leader away crashes the mock when a consumer fetches from it, so the
//! faults here leave leaders alone.)
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

use rdkafka_sys as rd;

/// A mock cluster of one broker; destroyed when dropped.
#[derive(Debug)]
pub struct MockCluster {
    /// The client the cluster runs in (it logs and polls through it).
    rk: *mut rd::rd_kafka_t,
    cluster: *mut rd::rd_kafka_mock_cluster_t,
}

// SAFETY: librdkafka's client and mock cluster are thread-safe handles; the
// wrapper only hands them to librdkafka's own API.
unsafe impl Send for MockCluster {}
// SAFETY: as above; every method takes `&self` and calls thread-safe API.
unsafe impl Sync for MockCluster {}

impl MockCluster {
    /// One broker; a new group forms `initial_rebalance_delay_ms` after its
    /// first join (a real broker's `group.initial.rebalance.delay.ms`).
    pub fn new(initial_rebalance_delay_ms: i32) -> Result<Self, String> {
        let mut error = [0 as c_char; 512];
        // SAFETY: a fresh configuration, handed to (and owned by) the new
        // client; `error` outlives the call and its length is given.
        let rk = unsafe {
            rd::rd_kafka_new(
                rd::rd_kafka_type_t::RD_KAFKA_PRODUCER,
                rd::rd_kafka_conf_new(),
                error.as_mut_ptr(),
                error.len(),
            )
        };
        if rk.is_null() {
            // SAFETY: librdkafka wrote a NUL-terminated message into `error`.
            let e = unsafe { CStr::from_ptr(error.as_ptr()) };
            return Err(e.to_string_lossy().into_owned());
        }
        // SAFETY: `rk` is a live client; the cluster is destroyed before it (Drop).
        let cluster = unsafe { rd::rd_kafka_mock_cluster_new(rk, 1) };
        if cluster.is_null() {
            // SAFETY: `rk` is live and no longer used.
            unsafe { rd::rd_kafka_destroy(rk) };
            return Err("rd_kafka_mock_cluster_new failed".to_owned());
        }
        // SAFETY: `cluster` is live.
        unsafe {
            rd::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, initial_rebalance_delay_ms)
        };
        Ok(Self { rk, cluster })
    }

    /// `host:port` of the cluster's broker, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        // SAFETY: the cluster is live; the string it returns lives as long as it.
        let servers = unsafe { CStr::from_ptr(rd::rd_kafka_mock_cluster_bootstraps(self.cluster)) };
        servers.to_string_lossy().into_owned()
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<(), String> {
        let name = CString::new(topic).map_err(|e| e.to_string())?;
        // SAFETY: the cluster is live; `name` outlives the call (the mock copies it).
        let error = unsafe {
            rd::rd_kafka_mock_topic_create(self.cluster, name.as_ptr(), partitions, replication)
        };
        if error == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            Err(format!("{error:?}"))
        }
    }
}

impl MockCluster {
    /// Makes the broker answer the next `count` produce requests (of any
    /// client) with NOT_ENOUGH_REPLICAS, as a cluster short of in-sync
    /// replicas does: nothing is stored, and producers retry.
    pub fn refuse_produce(&self, count: usize) {
        let errors = vec![rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; count];
        // SAFETY: the cluster is live; `errors` holds `count` codes and
        // outlives the call (the mock copies them).
        unsafe {
            rd::rd_kafka_mock_push_request_errors_array(
                self.cluster,
                PRODUCE,
                errors.len(),
                errors.as_ptr(),
            )
        };
    }

    /// Drops the produce refusals not used yet.
    pub fn accept_produce(&self) {
        // SAFETY: the cluster is live.
        unsafe { rd::rd_kafka_mock_clear_request_errors(self.cluster, PRODUCE) };
    }
}

/// The Produce request's key in the Kafka protocol.
const PRODUCE: i16 = 0;

impl Drop for MockCluster {
    fn drop(&mut self) {
        // SAFETY: both are live and dropped once; librdkafka requires the
        // cluster to go before the client it runs in.
        unsafe {
            rd::rd_kafka_mock_cluster_destroy(self.cluster);
            rd::rd_kafka_destroy(self.rk);
        }
    }
}
