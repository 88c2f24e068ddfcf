//! antre: a virtual waiting room that runs as a reverse proxy in front of
//! any website, holding the surplus in a fair, token-based line and letting
//! people through at the rate the operator sets, until the quota runs out.
//!
//! # Layout
//!
//! - [`config`]: the TOML config, checked into typed values; routing of a
//!   request to the room that guards it.
//! - [`clock`]: injected time, so queue maths and expiry are testable.
//! - [`store`]: rooms' counters behind the [`store::Store`] trait; the queue
//!   maths itself lives in [`store::queue`], the in-process store (with its
//!   state file) in `store::memory`.
//! - [`token`]: signed tickets and passes (HMAC-SHA256, key rotation).
//! - [`engine`]: the admission decision for one request, from a cached view
//!   of the counters.
//! - [`status`]: what a visitor is told about their place.
//! - [`page`]: the queue page and its siblings, in Indonesian and English.
//! - [`proxy`]: forwarding to the origin, streaming, upgrades.
//! - [`server`]: the visitor listener's request phases; errors become
//!   responses there and nowhere else.
//! - [`listener`]: connections on both listeners: caps per listener and
//!   per client address, the open-file limit, header and idle timeouts.
//! - [`metrics`]: every exported metric, named in one place.
//! - [`admin`]: the operators' listener: the dashboard (files in
//!   `src/dashboard/`), room reports, live changes, the audit trail,
//!   metrics, health and readiness.
//! - [`series`]: recent history sampled for the dashboard's charts.
//! - [`ctl`]: `antre ctl`, a client of the admin API.
//! - [`live`]: the swap cell a config reload (`SIGHUP`) replaces.
//! - [`run`]: wiring it all together for `antre run`.
//!
//! # A request's path
//!
//! `listener` accepts the connection; `server` takes the request and answers antre's own endpoints (`/_antre/...`).
//! Otherwise `config::route` finds the room guarding it; a request no room
//! guards goes straight to `proxy`. For a guarded one, `engine` checks the
//! visitor's pass (locally, no store call); failing that, their ticket
//! against the cached frontier (a store call only when their turn has come);
//! failing that, it asks the store for a ticket, which admits at once when
//! nobody is waiting. The outcome is a [`engine::Decision`]: forward to the
//! origin, or hold the visitor with a page or JSON about their place.
//! Meanwhile a background task refreshes each room's cached counters.
//!
//! Everything built from the config file (engine, proxy, admin API) sits in
//! a [`live::Live`] cell: `SIGHUP` builds the next generation beside the
//! running one and swaps it in; each request keeps the generation it
//! started with.

pub mod admin;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod engine;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod page;
pub mod proxy;
pub mod run;
pub mod series;
pub mod server;
pub mod status;
pub mod store;
pub mod token;
