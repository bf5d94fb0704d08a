//! The open-file limit `serve` runs under.
//!
//! Every admitted connection, every SDK connection to the embedded endpoint
//! and every open store file is a descriptor. Shells and systemd hand out a
//! soft limit of 1024 while the hard limit is far higher, and the default
//! connection caps alone allow 2048 connections; at the soft limit `accept`
//! fails with EMFILE and clients wait. So `serve` raises the soft limit to
//! the hard one at start (as Go's runtime does for every program), and says
//! so when even the hard limit is below what its caps can use.

use crate::cli::Role;
use crate::config::{Config, Driver};

/// Descriptors beyond the connection caps: store files, sled's, the log,
/// timers, the SDK's connections to the endpoint while they are set up.
const SPARE: u64 = 256;

/// The soft and hard `RLIMIT_NOFILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

/// Reads the limit; `None` if the system will not say.
pub fn current() -> Option<Limit> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    Some(Limit { soft: lim.rlim_cur, hard: lim.rlim_max })
}

/// Raises the soft limit to the hard one; returns the limit in force after.
pub fn raise() -> Option<Limit> {
    let before = current()?;
    if before.soft >= before.hard {
        return Some(before);
    }
    let raised = libc::rlimit { rlim_cur: before.hard, rlim_max: before.hard };
    // SAFETY: setrlimit only reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Some(before);
    }
    current()
}

/// How many descriptors `roles` may hold at once under `config`'s caps: each
/// listener's cap, once more for the web and worker roles' own SDK
/// connections to an embedded endpoint in the same process, and [`SPARE`].
pub fn needed(config: &Config, roles: &[Role]) -> u64 {
    let has = |r: Role| roles.contains(&r);
    let aws_listener = has(Role::S3) || has(Role::Sqs);
    let own_clients = aws_listener && config.driver == Driver::Embedded && (has(Role::Web) || has(Role::Worker));
    let web = if has(Role::Web) { config.web.max_connections } else { 0 };
    let aws = if aws_listener { config.aws.max_connections } else { 0 };
    let clients = if own_clients { config.aws.max_connections } else { 0 };
    (web + aws + clients) as u64 + SPARE
}

/// Raises the limit and warns when it stays below what the caps can use.
pub fn prepare(config: &Config, roles: &[Role]) {
    let Some(limit) = raise() else { return };
    let needed = needed(config, roles);
    if limit.soft < needed {
        tracing::warn!(
            limit = limit.soft,
            needed,
            "the open-file limit ({}) is below the {needed} descriptors the connection caps can use \
             (web.max_connections, aws.max_connections, once more for this process's own connections \
             to its endpoint, and {SPARE} spare); past it new connections wait. Raise the hard limit \
             (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=) or lower the caps",
            limit.soft,
        );
    } else {
        tracing::debug!(limit = limit.soft, needed, "open-file limit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_counts_the_caps_of_what_runs() {
        let mut config = Config::default();
        config.web.max_connections = 100;
        config.aws.max_connections = 10;
        let all = [Role::S3, Role::Sqs, Role::Web, Role::Worker];
        assert_eq!(needed(&config, &all), 100 + 10 + 10 + SPARE);
        assert_eq!(needed(&config, &[Role::S3, Role::Sqs]), 10 + SPARE);
        assert_eq!(needed(&config, &[Role::Web]), 100 + SPARE, "its endpoint is another process's");
        assert_eq!(needed(&config, &[Role::Worker]), SPARE);
        config.driver = Driver::Aws;
        assert_eq!(needed(&config, &all), 100 + 10 + SPARE, "its clients talk to AWS");
    }

    #[test]
    fn raising_never_lowers() {
        let before = current().expect("getrlimit");
        let after = raise().expect("getrlimit");
        assert!(after.soft >= before.soft && after.hard == before.hard, "{before:?} -> {after:?}");
    }
}
