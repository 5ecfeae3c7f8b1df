//! Why a request was not admitted ([`Shed`]) and where its client went away ([`Stage`]),
//! with their metric labels.

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue held `max_queue` waiters (standing: its room) and none ranked
    /// below the arrival; refused at once.
    QueueFull,
    /// The request waited until its deadline (`queue_timeout` or the route's).
    QueueTimeout,
    /// The queue was standing and the request had waited longer than the target.
    QueueDelay,
    /// A higher-priority arrival took this waiter's place in a full queue.
    Displaced,
    /// The queue was standing and held more than its room (a backlog from before
    /// it stood, or from a higher limit): this, an older waiter, was shed so that
    /// the newest are served.
    Superseded,
}

impl Shed {
    /// Every reason, in index order.
    pub const ALL: [Shed; 5] = [
        Self::QueueFull,
        Self::QueueTimeout,
        Self::QueueDelay,
        Self::Displaced,
        Self::Superseded,
    ];

    /// The `reason` label of `floodgate_shed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::QueueTimeout => "queue_timeout",
            Self::QueueDelay => "queue_delay",
            Self::Displaced => "displaced",
            Self::Superseded => "superseded",
        }
    }

    /// The reason's place in per-reason arrays ([`Shed::ALL`]'s order).
    pub(super) fn index(self) -> usize {
        match self {
            Self::QueueFull => 0,
            Self::QueueTimeout => 1,
            Self::QueueDelay => 2,
            Self::Displaced => 3,
            Self::Superseded => 4,
        }
    }
}

/// Where a request was when its client went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting in the admission queue.
    Queued,
    /// Admitted, waiting for the upstream's response head.
    InService,
}

impl Stage {
    /// The `stage` label of `floodgate_client_gone_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InService => "in_service",
        }
    }
}
