//! Routes and vehicles as domain records, written atomically with the events that announce them.
//!
//! # Trees
//!
//! The store's trees live in the outbox's sled database ([`TREES`], passed to
//! [`Outbox::open`](crate::queue::Outbox::open)). Values are [`record`] frames: a version byte
//! ([`record::RECORD_V1`]) and a JSON document.
//!
//! | tree                | key ([`keys`])                          | value                         |
//! |---------------------|-----------------------------------------|-------------------------------|
//! | `routes`            | route id (UUIDv7 text: sorts by time)   | [`record::RouteRecord`]        |
//! | `routes_by_vehicle` | vehicle id length u16 BE, id, route id  | the route's status tag (1 B)  |
//! | `routes_by_status`  | status tag (1 B), route id              | empty                         |
//! | `vehicles`          | vehicle id                              | [`record::VehicleRecord`]      |
//!
//! # Invariants
//!
//! * **Writes only through the outbox.** Every change is one [`Outbox::append`] carrying the
//!   records *and* the event (`route.optimized`, `route.updated`, `vehicle.position`): both
//!   commit in one sled transaction and are durable before the call returns, or neither exists.
//! * **Compare-and-set, then retry.** A read-modify-write reads the current bytes, computes the
//!   new record and appends with [`Expect::Equals`](crate::queue::Expect::Equals) (or [`Expect::Absent`](crate::queue::Expect::Absent)); when another writer
//!   got there first the outbox answers [`queue::Error::Conflict`], nothing was written, and the
//!   operation starts over from a fresh read ([`MAX_ATTEMPTS`] times, then [`Error::Busy`]).
//! * **Indexes follow their route.** Index entries are written in the same append as the route
//!   record whose compare-and-set guards them, so they agree with it after any crash.
//! * **A GPS fix touches one small record.** The vehicle record holds a copy of its active route's
//!   next stop; a fix updates the vehicle's delay there, and readers shift the route's planned
//!   arrivals by that delay ([`lifecycle::fill_etas`]). The large route record is not rewritten
//!   at GPS rate. Changing a stop or re-planning updates both records in one append.
//! * **The solver runs on the blocking pool, one solve per core at a time**, the smallest waiting
//!   problem next and at most `optimize.max_queued_solves` waiting ([`solvers`]); waiting for a
//!   turn counts against the request's deadline, and a full queue is a 503 at once, so overload
//!   shows as quick 503s, not as a stalled CPU or timeouts.
//! * **Reads go straight to the trees** on the blocking pool; they may see a state that is a
//!   moment old but never a half-written one.
//! * **Events stay small, and fit in a Kafka record before they are acknowledged.** A stop change
//!   announces only what changed and the route's new `version` ([`announce`]); the whole route
//!   goes out only when the plan changes (`route.optimized`, a re-plan). An event that would
//!   still be a record over `kafka.max_record_bytes` ([`RecordLimit`]) fails the operation with
//!   [`Error::EventTooLarge`] before anything is written: the drain would dead-letter it after
//!   the client had its answer.
//!
//! Status transitions are in [`lifecycle`].

pub mod announce;
pub mod consumed;
pub mod imported;
pub mod keys;
pub mod lifecycle;
mod positions;
mod reads;
pub mod record;
mod replan;
pub mod solvers;
#[cfg(test)]
pub(crate) mod testdata;
#[cfg(test)]
mod tests;
mod writes;

use std::sync::Arc;

use crate::config::KafkaConfig;
use crate::events::NewEvent;
use crate::optimize;
use crate::queue::{self, Outbox};

pub use lifecycle::Travel;
pub use positions::Tracked;
pub use reads::{ListQuery, Page, RouteSummary};
pub use record::{Position, Route, RouteStatus, StopStatus};
pub use writes::StopUpdate;

pub const ROUTES: &str = "routes";
pub const BY_VEHICLE: &str = "routes_by_vehicle";
pub const BY_STATUS: &str = "routes_by_status";
pub const VEHICLES: &str = "vehicles";
/// The domain trees to open with the outbox.
pub const TREES: &[&str] = &[
    ROUTES,
    BY_VEHICLE,
    BY_STATUS,
    VEHICLES,
    consumed::CONSUMER_OFFSETS,
    consumed::CONSUMER_DEAD,
];

/// Optimize requests that may wait for the solver unless configured otherwise.
pub const DEFAULT_MAX_QUEUED_SOLVES: usize = 8;

/// Compare-and-set attempts before an operation gives up with [`Error::Busy`].
pub const MAX_ATTEMPTS: usize = 16;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    /// The change is impossible in the record's current state.
    #[error("{0}")]
    Conflict(String),
    /// The request cannot be solved as given; `field` is its JSON path.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The optimizer failed for a reason that is not the client's.
    #[error("optimizer failed: {0}")]
    Optimizer(optimize::Error),
    #[error(transparent)]
    Queue(#[from] queue::Error),
    /// The event announcing the change would be a Kafka record larger than the drain may send;
    /// nothing was written.
    #[error(
        "the {kind} event of this request would be a Kafka record of {bytes} bytes, more than \
         kafka.max_record_bytes ({limit}); nothing was written"
    )]
    EventTooLarge {
        kind: String,
        bytes: u64,
        limit: u64,
    },
    /// Other writers kept changing the record; nothing was written.
    #[error("the record kept changing concurrently; retry")]
    Busy,
    /// The deadline passed before anything was written.
    #[error("the request took too long; nothing was written")]
    TimedOut,
    /// Too many optimize requests wait for the solver; nothing was written.
    #[error("{0}; nothing was written, retry shortly")]
    SolverQueueFull(String),
    #[error("stored {tree} record {key:?} is unreadable: {source}")]
    Corrupt {
        tree: &'static str,
        key: String,
        source: record::DecodeError,
    },
    #[error("a blocking task failed: {0}")]
    Task(String),
}

impl From<optimize::Error> for Error {
    fn from(e: optimize::Error) -> Error {
        match e {
            optimize::Error::Invalid { field, message } => Error::Invalid { field, message },
            other => Error::Optimizer(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Topic of each event kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub route_optimized: String,
    pub route_updated: String,
    pub vehicle_position: String,
}

/// What an event must fit in once it is a Kafka record (see the invariants above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLimit {
    /// `kafka.max_record_bytes`: the drain dead-letters a larger record.
    pub max_bytes: u64,
    /// `kafka.event_source` and `depot.id`: the record's `ce_source` and `ce_depotid` headers
    /// count towards its size.
    pub origin: crate::events::Origin,
}

impl From<&KafkaConfig> for RecordLimit {
    fn from(k: &KafkaConfig) -> Self {
        RecordLimit {
            max_bytes: k.max_record_bytes,
            origin: crate::events::Origin::new(&k.event_source, ""),
        }
    }
}

impl RecordLimit {
    /// The limit for records that carry `depot` (`depot.id`) as their `ce_depotid` header.
    pub fn with_depot(mut self, depot: &str) -> RecordLimit {
        self.origin.depot = depot.to_string();
        self
    }

    /// [`Error::EventTooLarge`] for the first event whose record would be over the limit,
    /// counted as the drain counts it ([`NewEvent::record_size`]).
    fn check(&self, events: &[NewEvent]) -> Result<()> {
        for e in events {
            let bytes = e.record_size(&self.origin) as u64;
            if bytes > self.max_bytes {
                return Err(Error::EventTooLarge {
                    kind: e.kind.clone(),
                    bytes,
                    limit: self.max_bytes,
                });
            }
        }
        Ok(())
    }
}

/// A cloneable handle to the route store.
#[derive(Clone)]
pub struct Store {
    outbox: Outbox,
    trees: Arc<Trees>,
    topics: Arc<Topics>,
    /// What every event must fit in, checked before it is appended.
    limit: Arc<RecordLimit>,
    /// Solver parameters; `now` is filled in per request.
    params: Arc<optimize::Params>,
    /// One turn per core, smallest problem next, a bounded queue ([`solvers`]).
    solvers: Arc<solvers::Solvers>,
    /// Where travel costs come from: the road network, when one is configured.
    costs: Option<optimize::SharedSource>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

struct Trees {
    routes: sled::Tree,
    by_vehicle: sled::Tree,
    by_status: sled::Tree,
    vehicles: sled::Tree,
    consumer_offsets: sled::Tree,
}

impl Store {
    /// A store over an outbox opened with [`TREES`].
    ///
    /// # Panics
    /// If the outbox was opened without the store's trees (a wiring mistake in `app`).
    pub fn new(
        outbox: Outbox,
        topics: Topics,
        params: optimize::Params,
        limit: RecordLimit,
    ) -> Store {
        let tree = |name| {
            outbox
                .domain_tree(name)
                .unwrap_or_else(|| panic!("the outbox was opened without the {name} tree"))
        };
        let trees = Trees {
            routes: tree(ROUTES),
            by_vehicle: tree(BY_VEHICLE),
            by_status: tree(BY_STATUS),
            vehicles: tree(VEHICLES),
            consumer_offsets: tree(consumed::CONSUMER_OFFSETS),
        };
        Store {
            outbox,
            trees: Arc::new(trees),
            topics: Arc::new(topics),
            limit: Arc::new(limit),
            params: Arc::new(params),
            solvers: solvers::Solvers::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
                DEFAULT_MAX_QUEUED_SOLVES,
            ),
            costs: None,
        }
    }

    /// Costs from `source` (the road network) instead of the great-circle model.
    pub fn with_costs(mut self, source: optimize::SharedSource) -> Store {
        self.costs = Some(source);
        self
    }

    /// At most `max_queued` optimize requests wait for the solver; more get 503 at once.
    pub fn with_solver_queue(mut self, max_queued: usize) -> Store {
        let turns = std::thread::available_parallelism().map_or(2, |n| n.get());
        self.solvers = solvers::Solvers::new(turns, max_queued);
        self
    }

    /// The driving-time model used for ETAs.
    pub fn travel(&self) -> Travel {
        Travel {
            detour_factor: self.params.detour_factor,
            average_speed_kmh: self.params.average_speed_kmh,
            costs: self.costs.clone(),
        }
    }

    /// Run a read (or the solver) on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Trees) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let trees = self.trees.clone();
        tokio::task::spawn_blocking(move || f(&trees))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }
}

/// Read and decode one record; `None` when absent. Also returns the raw bytes for
/// compare-and-set.
fn read_record<T: for<'de> serde::Deserialize<'de>>(
    tree: &sled::Tree,
    name: &'static str,
    key: &[u8],
) -> Result<Option<(Vec<u8>, T)>> {
    let Some(raw) = tree.get(key).map_err(queue::Error::from)? else {
        return Ok(None);
    };
    let value = record::decode(&raw).map_err(|source| Error::Corrupt {
        tree: name,
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })?;
    Ok(Some((raw.to_vec(), value)))
}
