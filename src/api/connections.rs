//! The cap on connections one client address holds open at once. `herald
//! serve` counts each connection by its peer's IP address as it is accepted
//! ([`ClientConnections::admit`]); a connection past the cap is kept only
//! long enough to answer its request with 429 `too-many-connections`
//! (`Retry-After`, `Connection: close`), so a client learns why instead of
//! seeing a reset, and one client cannot take every connection slot. A
//! connection over the cap is not counted: when the client's others close,
//! its next connection is served.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::ResponseError;

use super::problem::{Problem, ProblemKind};

/// Open connections by client address, against an optional cap.
#[derive(Debug)]
pub struct ClientConnections {
    cap: Option<NonZeroUsize>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// What a new connection gets; kept in the connection's data until it
/// closes.
#[derive(Debug)]
pub enum Admission {
    /// Served; the client's count drops when this does.
    Admitted(Slot),
    /// Past the cap: every request on it is answered 429.
    OverCap { cap: usize },
}

/// A counted connection of one address.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<ClientConnections>,
    peer: IpAddr,
}

impl ClientConnections {
    /// Counts connections against `cap` per address (`None`: no cap).
    pub fn new(cap: Option<NonZeroUsize>) -> Arc<Self> {
        Arc::new(Self {
            cap,
            open: Mutex::default(),
        })
    }

    /// Admits a connection from `peer` unless the address already holds
    /// `cap` of them. A connection with no IP peer (a Unix socket) is
    /// always admitted.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Option<Admission> {
        let peer = peer?;
        let cap = self.cap?;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(peer).or_insert(0);
        if *count >= cap.get() {
            tracing::debug!(%peer, cap = cap.get(), "Refusing a connection past the per-client cap.");
            return Some(Admission::OverCap { cap: cap.get() });
        }
        *count += 1;
        Some(Admission::Admitted(Slot {
            connections: Arc::clone(self),
            peer,
        }))
    }

    /// Connections `peer` holds open now.
    pub fn open_from(&self, peer: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&peer).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            // Gone with the last connection, so the map holds only
            // addresses connected now.
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// Answers every request of a connection past the cap with 429
/// `too-many-connections`, and closes it.
pub async fn refuse_over_cap(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let over = match req.conn_data::<Admission>() {
        Some(Admission::OverCap { cap }) => Some(*cap),
        _ => None,
    };
    if let Some(cap) = over {
        let mut response = Problem::new(
            ProblemKind::TooManyConnections,
            format!(
                "this address already holds {cap} connections to Herald, the most it may; \
                 reuse one of them (keep-alive) or close some and retry"
            ),
        )
        .with("limit", cap)
        .retry_after(1)
        .error_response();
        // Closed once answered: an over-cap connection is never reused.
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_the_cap_and_gets_its_slots_back() {
        let connections = ClientConnections::new(NonZeroUsize::new(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = connections.admit(Some(a));
        let second = connections.admit(Some(a));
        assert!(matches!(first, Some(Admission::Admitted(_))));
        assert!(matches!(second, Some(Admission::Admitted(_))));
        assert!(matches!(
            connections.admit(Some(a)),
            Some(Admission::OverCap { cap: 2 })
        ));
        assert_eq!(connections.open_from(a), 2, "a refused one is not counted");
        assert!(matches!(
            connections.admit(Some(b)),
            Some(Admission::Admitted(_))
        ));
        drop(first);
        assert_eq!(connections.open_from(a), 1);
        assert!(matches!(
            connections.admit(Some(a)),
            Some(Admission::Admitted(_))
        ));
        assert!(connections.admit(None).is_none(), "no address, no count");
    }

    #[test]
    fn no_cap_counts_nothing() {
        let connections = ClientConnections::new(None);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(connections.admit(Some(a)).is_none());
        assert_eq!(connections.open_from(a), 0);
    }
}
