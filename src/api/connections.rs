//! Connection-level bounds of `herald serve`, below the routes.
//!
//! The cap on connections one client address holds open at once: each
//! connection is counted by its peer's IP address as it is accepted
//! ([`ClientConnections::admit`]); a connection past the cap is kept only
//! long enough to answer its request with 429 `too-many-connections`
//! (`Retry-After`, `Connection: close`), so a client learns why instead of
//! seeing a reset, and one client cannot take every connection slot. A
//! connection over the cap is not counted: when the client's others close,
//! its next connection is served.
//!
//! The bound on the time between requests ([`Activity`]): actix-http times
//! the head of a connection's first request and closes idle keep-alive
//! connections, but once a byte of a later request has arrived it waits for
//! the rest of that head forever. A connection with no request in flight
//! for longer than the keep-alive and the head timeout together is closed.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
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

/// Whether a connection has a request in flight, and since when it has had
/// none; kept in the connection's data. A watchdog closes the connection's
/// reading side once it has been idle for longer than its limit: actix-http
/// then finishes writing what it has and closes the connection.
pub struct Activity(Rc<ActivityState>);

struct ActivityState {
    /// Requests begun and not yet answered to the last byte.
    in_flight: Cell<usize>,
    /// When the last request ended (or the connection opened).
    idle_since: Cell<Instant>,
    /// The connection's socket, shared (a duplicate descriptor), so the
    /// watchdog can end it; dropped with the connection.
    #[cfg(unix)]
    socket: RefCell<Option<std::net::TcpStream>>,
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activity")
            .field("in_flight", &self.0.in_flight.get())
            .finish_non_exhaustive()
    }
}

impl Activity {
    /// Watches the connection over `io` (a plain TCP stream; anything else
    /// is not watched): closed once idle for `limit`. Must run on the
    /// connection's worker (it spawns the watchdog there).
    pub fn watch(io: &dyn Any, limit: Duration) -> Option<Activity> {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let stream = io.downcast_ref::<actix_web::rt::net::TcpStream>()?;
            let socket = stream.as_fd().try_clone_to_owned().ok()?;
            let state = Rc::new(ActivityState {
                in_flight: Cell::new(0),
                idle_since: Cell::new(Instant::now()),
                socket: RefCell::new(Some(std::net::TcpStream::from(socket))),
            });
            actix_web::rt::spawn(watchdog(Rc::downgrade(&state), limit));
            Some(Activity(state))
        }
        #[cfg(not(unix))]
        {
            let _ = (io, limit);
            None
        }
    }
}

#[cfg(unix)]
async fn watchdog(state: std::rc::Weak<ActivityState>, limit: Duration) {
    loop {
        let wait = {
            let Some(state) = state.upgrade() else { return };
            let idle = state.idle_since.get().elapsed();
            if state.in_flight.get() > 0 {
                // Looked at again a limit later: a request may run long.
                limit
            } else if idle >= limit {
                if let Some(socket) = state.socket.borrow_mut().take() {
                    tracing::debug!(
                        idle_ms = idle.as_millis() as u64,
                        "Closing a connection that sent no whole request in time."
                    );
                    // The reading side only: actix-http sees the end of the
                    // stream, writes what it still holds, and closes.
                    let _ = socket.shutdown(std::net::Shutdown::Read);
                }
                return;
            } else {
                limit - idle
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Marks a request in flight from its head until its answer's last byte
/// (a websocket's or an event stream's for as long as it lasts).
pub async fn track_activity(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<InFlightBody>, actix_web::Error> {
    let guard = req
        .conn_data::<Activity>()
        .map(|activity| InFlight::begin(&activity.0));
    let response = next.call(req).await?;
    Ok(response.map_body(|_, body| InFlightBody {
        body: body.boxed(),
        _guard: guard,
    }))
}

/// One request in flight; ends when dropped.
struct InFlight(Rc<ActivityState>);

impl InFlight {
    fn begin(state: &Rc<ActivityState>) -> Self {
        state.in_flight.set(state.in_flight.get() + 1);
        Self(Rc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
        self.0.idle_since.set(Instant::now());
    }
}

/// An answer's body that keeps its request in flight until it is sent or
/// dropped.
pub struct InFlightBody {
    body: BoxBody,
    _guard: Option<InFlight>,
}

impl std::fmt::Debug for InFlightBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightBody").finish_non_exhaustive()
    }
}

impl MessageBody for InFlightBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
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
