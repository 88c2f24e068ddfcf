//! Routing: which room, if any, guards a request, from its host and its
//! canonical path (see [`crate::path`]).
//!
//! Every room's `paths` guard and its `unguarded` prefixes exempt; among all
//! the prefixes that match a request on its host, the longest decides, and
//! a guarding prefix wins a tie, so a request is guarded unless an exemption
//! is more specific than every guard. Prefixes match whole segments:
//! `/daftar` matches `/daftar` and `/daftar/x`, not `/daftarx`.

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::config::RoomConfig;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The room at this index guards it.
    Room(usize),
    /// No room guards it (or an `unguarded` prefix exempts it).
    Unguarded,
    /// Its host is one antre does not serve: answered `421`.
    UnknownHost,
}

/// One room's prefixes, as routing keys.
#[derive(Debug, Clone)]
struct RoomRoutes {
    hosts: Vec<String>,
    guarded: Vec<String>,
    unguarded: Vec<String>,
}

/// The rooms' routes, built once per config.
#[derive(Debug, Clone, Default)]
pub struct Router {
    rooms: Vec<RoomRoutes>,
    /// Host names antre serves, when it serves only some: `[listen] hosts`
    /// and, when every room names its hosts, theirs. `None`: any host.
    known_hosts: Option<BTreeSet<String>>,
}

impl Router {
    /// `listen_hosts` and the rooms' hosts are already normal (lower case,
    /// no port, no trailing dot); their paths are routing keys.
    pub fn new(rooms: &[RoomConfig], listen_hosts: &[String]) -> Router {
        let every_room_names_hosts = !rooms.is_empty() && rooms.iter().all(|r| !r.hosts.is_empty());
        let known_hosts = (!listen_hosts.is_empty() || every_room_names_hosts).then(|| {
            let mut known: BTreeSet<String> = listen_hosts.iter().cloned().collect();
            if every_room_names_hosts {
                known.extend(rooms.iter().flat_map(|r| r.hosts.iter().cloned()));
            }
            known
        });
        Router {
            rooms: rooms
                .iter()
                .map(|room| RoomRoutes {
                    hosts: room.hosts.clone(),
                    guarded: room.paths.clone(),
                    unguarded: room.unguarded.clone(),
                })
                .collect(),
            known_hosts,
        }
    }

    /// Routes a request for `host` (as the client wrote it, port and all)
    /// and the routing key of its canonical path.
    pub fn route(&self, host: Option<&str>, key: &str) -> Route {
        let host = host.map(normal_host);
        if let Some(known) = &self.known_hosts {
            if !host.as_ref().is_some_and(|h| known.contains(h.as_ref())) {
                return Route::UnknownHost;
            }
        }
        // (length of the longest matching prefix, guards, room)
        let mut best: Option<(usize, bool, usize)> = None;
        for (index, room) in self.rooms.iter().enumerate() {
            if !room.hosts.is_empty()
                && !host
                    .as_ref()
                    .is_some_and(|h| room.hosts.iter().any(|r| *r == *h))
            {
                continue;
            }
            let rules = room
                .guarded
                .iter()
                .map(|p| (p, true))
                .chain(room.unguarded.iter().map(|p| (p, false)));
            for (prefix, guards) in rules {
                if !prefix_matches(prefix, key) {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some((len, best_guards, _)) => {
                        prefix.len() > len || (prefix.len() == len && guards && !best_guards)
                    }
                };
                if better {
                    best = Some((prefix.len(), guards, index));
                }
            }
        }
        match best {
            Some((_, true, index)) => Route::Room(index),
            _ => Route::Unguarded,
        }
    }
}

/// `/daftar` matches `/daftar` and `/daftar/x`, not `/daftarx`; `/form/`
/// matches `/form` too. Both sides are routing keys.
fn prefix_matches(prefix: &str, key: &str) -> bool {
    match key.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => prefix.len() > 1 && prefix.strip_suffix('/') == Some(key),
    }
}

/// Lower case, without port or the trailing dot of a fully qualified name.
pub fn normal_host(host: &str) -> Cow<'_, str> {
    let host = strip_port(host).trim_end_matches('.');
    // Nearly always already in lower case: nothing copied then.
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn build(rooms: &str, listen: &str) -> Router {
        let text =
            format!("[listen]\n{listen}\n[origin]\nurl = \"http://127.0.0.1:9000\"\n{rooms}");
        let config = Config::parse(&text, Path::new("/tmp")).unwrap();
        Router::new(&config.rooms, &config.listen.hosts)
    }

    fn key(path: &str) -> String {
        crate::path::canonicalise(path).unwrap().key().to_owned()
    }

    #[test]
    fn hosts_compare_without_port_final_dot_or_case() {
        for (host, normal) in [
            ("kota.example", "kota.example"),
            ("Kota.EXAMPLE.:8080", "kota.example"),
            ("kota.example.", "kota.example"),
            ("[::1]:443", "::1"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            assert_eq!(normal_host(host), normal, "{host}");
        }
        // Already normal: nothing copied.
        assert!(matches!(normal_host("kota.example:80"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_longest_prefix_decides_and_a_guard_wins_a_tie() {
        let router = build(
            "[[rooms]]\nid = \"all\"\npaths = [\"/\"]\nunguarded = [\"/static\", \"/favicon.ico\"]\nadmit_per_minute = 5\n\
             [[rooms]]\nid = \"daftar\"\npaths = [\"/Daftar\", \"/form/\", \"/static/daftar\"]\nadmit_per_minute = 5\n",
            "",
        );
        for (path, route) in [
            ("/", Route::Room(0)),
            ("/berita", Route::Room(0)),
            ("/static/app.js", Route::Unguarded),
            ("/STATIC/app.js", Route::Unguarded),
            ("/staticx", Route::Room(0)),
            ("/favicon.ico", Route::Unguarded),
            ("/daftar", Route::Room(1)),
            ("/DAFTAR/x;jsessionid=2", Route::Room(1)),
            ("/daftarx", Route::Room(0)),
            ("/form", Route::Room(1)),
            ("/form/step", Route::Room(1)),
            ("/static/daftar/x", Route::Room(1)),
        ] {
            assert_eq!(
                router.route(Some("kota.example"), &key(path)),
                route,
                "{path}"
            );
        }
        let tie = build(
            "[[rooms]]\nid = \"a\"\npaths = [\"/x\"]\nunguarded = [\"/y\"]\nadmit_per_minute = 5\n\
             [[rooms]]\nid = \"b\"\npaths = [\"/y\"]\nadmit_per_minute = 5\n",
            "",
        );
        assert_eq!(tie.route(None, "/y"), Route::Room(1));
    }

    #[test]
    fn hosts_nobody_serves_are_unknown() {
        let rooms = "[[rooms]]\nid = \"daftar\"\npaths = [\"/daftar\"]\nhosts = [\"vaksin.kota.example\"]\nadmit_per_minute = 5\n";
        let only_rooms = build(rooms, "");
        assert_eq!(
            only_rooms.route(Some("VAKSIN.kota.example.:8080"), "/daftar"),
            Route::Room(0)
        );
        assert_eq!(
            only_rooms.route(Some("vaksin.kota.example"), "/berita"),
            Route::Unguarded
        );
        assert_eq!(
            only_rooms.route(Some("other.example"), "/daftar"),
            Route::UnknownHost
        );
        assert_eq!(only_rooms.route(None, "/daftar"), Route::UnknownHost);

        let listed = build(rooms, "hosts = [\"www.kota.example\"]");
        assert_eq!(
            listed.route(Some("www.kota.example"), "/berita"),
            Route::Unguarded
        );
        assert_eq!(
            listed.route(Some("evil.example"), "/berita"),
            Route::UnknownHost
        );

        // A room for any host: every host is served.
        let open = build(
            &format!("{rooms}[[rooms]]\nid = \"all\"\npaths = [\"/\"]\nadmit_per_minute = 5\n"),
            "",
        );
        assert_eq!(open.route(Some("other.example"), "/daftar"), Route::Room(1));
    }
}
