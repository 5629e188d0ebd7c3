//! Event counters of the kernel programs (per-CPU array indices). Never renumber: dashboards
//! and the userspace collector read them by index.

/// Index into the `STATS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// connect() rewritten to the gateway.
    Steered = 0,
    /// connect() to a steered address made by the gateway itself: left alone.
    SkipGateway = 1,
    /// connect() to a steered address from another netns while no node address is configured.
    SkipNoNodeAddr = 2,
    /// Steered connection re-keyed by client address at ESTABLISHED.
    OrigRekeyed = 3,
    /// Flow records created (active + passive).
    Flows = 4,
    /// Sockets inserted into the acceleration sockhash.
    AccelSockets = 5,
    /// sk_msg messages redirected to the peer socket.
    AccelRedirects = 6,
    /// sk_msg messages passed to the normal TCP path (peer not in the sockhash).
    AccelPassed = 7,
    /// Map update failures (maps full in a non-LRU map, or an insert race).
    MapErrors = 8,
}

/// Number of entries of the `STATS` array.
pub const STATS_LEN: u32 = 9;

impl Stat {
    /// Every counter, in index order, with its metric label.
    pub const ALL: [(Stat, &'static str); STATS_LEN as usize] = [
        (Stat::Steered, "steered"),
        (Stat::SkipGateway, "skip_gateway"),
        (Stat::SkipNoNodeAddr, "skip_no_node_address"),
        (Stat::OrigRekeyed, "orig_rekeyed"),
        (Stat::Flows, "flows"),
        (Stat::AccelSockets, "accel_sockets"),
        (Stat::AccelRedirects, "accel_redirects"),
        (Stat::AccelPassed, "accel_passed"),
        (Stat::MapErrors, "map_errors"),
    ];
}
