//! librdkafka's in-process mock cluster, created through rdkafka-sys:
//! rdkafka's `MockCluster` does not expose the handle needed to shorten a
//! new group's first join or to make the broker refuse produce requests.
//! (Taking a partition's leader away crashes the mock when a consumer
//! fetches from it, so the faults here leave leaders alone.) The
//! cluster speaks the real protocol on a local port, so a `herald` child
//! process reaches it like any cluster. It has no CreateTopics: tests make
//! their topics here.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

use rdkafka_sys as rd;

/// One mock broker (id 1), destroyed on drop.
#[derive(Debug)]
pub struct MockKafka {
    /// The client the cluster runs in (it logs and polls through it).
    rk: *mut rd::rd_kafka_t,
    cluster: *mut rd::rd_kafka_mock_cluster_t,
}

// SAFETY: the mock cluster runs on its own thread and guards its state with
// a lock; its functions may be called from any thread.
unsafe impl Send for MockKafka {}
// SAFETY: as above.
unsafe impl Sync for MockKafka {}

impl MockKafka {
    /// One broker; a new group forms `initial_rebalance_delay_ms` after its
    /// first join (a real broker's default is 3000).
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

    /// `host:port` of the cluster.
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
        answer(error)
    }

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

fn answer(error: rd::rd_kafka_resp_err_t) -> Result<(), String> {
    if error == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(format!("{error:?}"))
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        // SAFETY: both are live and dropped once; librdkafka requires the
        // cluster to go before the client it runs in.
        unsafe {
            rd::rd_kafka_mock_cluster_destroy(self.cluster);
            rd::rd_kafka_destroy(self.rk);
        }
    }
}
