//! antre: a virtual waiting room that runs as a reverse proxy in front of
//! any website, holding the surplus in a fair, token-based line and letting
//! people through at the rate the operator sets, until the quota runs out.
//!
//! # Layout
//!
//! - [`config`]: the TOML config, checked into typed values.
//! - [`path`]: canonical request paths; ambiguous ones are refused.
//! - [`route`]: which room guards a host and path.
//! - [`cookie`]: antre's own cookies, found in any `Cookie` header;
//!   `Set-Cookie` values.
//! - [`forwarded`]: trusted proxies and the identity headers the origin is
//!   told.
//! - [`clock`]: injected time, so queue maths and expiry are testable.
//! - [`store`]: rooms' counters behind the [`store::Store`] trait; the queue
//!   maths itself lives in [`store::queue`], the in-process store (with its
//!   state file) in `store::memory`.
//! - [`token`]: signed tickets and passes (HMAC-SHA256, key rotation).
//! - [`admission`]: the signed `antre-admission` header that tells the
//!   origin which admission a request belongs to, and its keys.
//! - [`engine`]: the admission decision for one request, from a cached view
//!   of the counters.
//! - [`limit`]: keyed rate limits (GCRA), bounded in memory.
//! - [`memo`]: a bounded memory of verified tokens and signed headers.
//! - [`shield`]: what the engine keeps so one person holds one place: free
//!   tickets per client network, each pass's rate and networks.
//! - [`work`]: the proof of work a network pays past its free tickets, and
//!   the page that does it.
//! - [`status`]: what a visitor is told about their place.
//! - [`draw`]: the fair draw at a phase's opening: seed, commitment and
//!   order, as anyone can recompute them.
//! - [`board`]: the public board of the rooms that opt in.
//! - [`page`]: the queue page and its siblings, in Indonesian and English.
//! - [`proxy`]: forwarding to the origin, streaming, upgrades; [`pool`]
//!   its keep-alive connections, one stack per worker thread, and the
//!   exchange on them in the request's own task; [`wire`] the HTTP/1.1
//!   bytes of that exchange.
//! - [`server`]: the request pipeline; errors become responses there and
//!   nowhere else.
//! - [`listener`]: connections on both listeners: caps per listener and
//!   per client address, the open-file limit, header and idle timeouts,
//!   TLS ended here ([`tls`], [`stream`]), the worker threads that serve
//!   visitors; plain HTTP/1.1 `GET`s read and answered by antre's own
//!   side, everything else by hyper's; quiet connections wait outside
//!   hyper in [`park`], HTTP/2 ones with what [`frames`] kept of their
//!   state.
//! - [`tls`]: the certificate and key, reloaded in place; TLS to an
//!   `https://` origin.
//! - [`metrics`]: every exported metric, named in one place.
//! - [`admin`]: the operators' listener: the dashboard (files in
//!   `src/dashboard/`), room reports, live changes, the audit trail,
//!   metrics, health and readiness.
//! - [`series`]: recent history sampled for the dashboard's charts.
//! - [`ctl`]: `antre ctl`, a client of the admin API.
//! - [`live`]: the swap cell a config reload (`SIGHUP`) replaces.
//! - [`logging`]: log lines written by a background thread, off the
//!   request path.
//! - [`run`]: wiring it all together for `antre run`.
//!
//! # A request's path
//!
//! Every visitor request runs through the same phases in [`server`], over
//! one [`server::Context`] built once:
//!
//! 1. **accept**: the listener takes the connection (caps, timeouts) and
//!    hands it to a worker thread, which serves it to the end.
//! 2. **parse** ([`server::parse`]): the method, the path in its one
//!    spelling ([`path::canonicalise`]), the host, the body's framing, the
//!    cookie jar ([`cookie::Jar`]), language, JSON or HTML. A request that
//!    origins could read more than one way is refused here with `400`.
//! 3. **route**: antre's own endpoints (`/_antre/...`), a CORS preflight,
//!    the room that guards the path ([`route::Router`]), no room, or a host
//!    antre does not serve (`421`).
//! 4. **admission**: the first-visit cookie check, then [`engine`]: an
//!    allow-listed address; the visitor's pass (locally, no store call; its
//!    rate, and a store call the first time it comes from a new network);
//!    failing that, their ticket against the cached frontier (a store call
//!    only when their turn has come; a ticket from before the phase now
//!    open comes back to it); a return ticket kept for a later phase; an
//!    entry in the phase's draw; failing all, a ticket (or, in a draw's
//!    pre-queue, an entry) from the
//!    store, which admits at once when nobody is waiting, free within the
//!    network's budget and for a proof of work past it. The outcome is an
//!    [`engine::Decision`].
//! 5. **forward** ([`proxy`]): the canonical path, identity headers
//!    rewritten ([`forwarded`]), the signed [`admission`] header for an
//!    admitted visitor, sent on a pooled connection in the request's own
//!    task ([`pool`], [`wire`]); a response carrying a pass made private.
//! 6. **respond**: the queue page or JSON for a visitor held, an error
//!    page for origin trouble.
//! 7. **log**: one count ([`metrics`]) and one access-log line per request,
//!    with its outcome.
//!
//! Meanwhile a background task refreshes each room's cached counters.
//!
//! Everything built from the config file (engine, proxy, admin API) sits in
//! a [`live::Live`] cell: `SIGHUP` builds the next generation beside the
//! running one and swaps it in; each request keeps the generation it
//! started with.

pub mod admin;
pub mod admission;
pub mod board;
pub mod clock;
pub mod config;
pub mod cookie;
pub mod ctl;
pub mod draw;
pub mod engine;
pub mod forwarded;
pub mod frames;
pub mod limit;
pub mod listener;
pub mod live;
pub mod logging;
pub mod memo;
pub mod metrics;
pub mod page;
pub mod park;
pub mod path;
pub mod pool;
pub mod proxy;
pub mod route;
pub mod run;
pub mod series;
pub mod server;
pub mod shield;
pub mod status;
pub mod store;
pub mod stream;
pub mod tls;
pub mod token;
pub mod wire;
pub mod work;
