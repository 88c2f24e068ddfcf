//! `antre ctl`: the operators' command line, a client of the admin API.
//! Readable tables by default, the API's JSON with `--json`.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status,
    Rate {
        room: String,
        per_minute: u32,
    },
    /// `None` removes the quota.
    Quota {
        room: String,
        quota: Option<u64>,
    },
    Pause {
        room: String,
    },
    Resume {
        room: String,
    },
    Reset {
        room: String,
    },
    /// A staff invite link: `uses` visitors skip the line for `minutes`.
    Invite {
        room: String,
        uses: u32,
        minutes: u64,
    },
}

/// Where the admin API is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Like `http://127.0.0.1:9090`.
    pub addr: String,
    pub token: Option<String>,
    /// Who is asking, for the audit log.
    pub operator: String,
}

/// Why a command failed; printed as is.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach the admin API at {addr}: {message}")]
    Unreachable { addr: String, message: String },
    #[error("{0}")]
    Refused(String),
}

/// Runs `command` and returns what to print.
pub async fn run(target: &Target, command: &Command, json: bool) -> Result<String, CtlError> {
    let (method, path, body) = match command {
        Command::Status => (Method::GET, "/api/rooms".to_owned(), None),
        Command::Rate { room, per_minute } => {
            patch(room, serde_json::json!({"admit_per_minute": per_minute}))
        }
        Command::Quota { room, quota } => patch(room, serde_json::json!({"quota": quota})),
        Command::Pause { room } => patch(room, serde_json::json!({"paused": true})),
        Command::Resume { room } => patch(room, serde_json::json!({"paused": false})),
        Command::Reset { room } => (
            Method::POST,
            format!("/api/rooms/{room}/reset"),
            Some(serde_json::json!({"confirm": room})),
        ),
        Command::Invite {
            room,
            uses,
            minutes,
        } => (
            Method::POST,
            format!("/api/rooms/{room}/invites"),
            Some(serde_json::json!({"uses": uses, "minutes": minutes})),
        ),
    };
    let answer = call(target, method, &path, body).await?;
    if json {
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        ));
    }
    Ok(match answer {
        Value::Array(rooms) => table(&rooms),
        invite if matches!(command, Command::Invite { .. }) => {
            let link = invite["url"]
                .as_str()
                .or(invite["path"].as_str())
                .unwrap_or("?");
            format!(
                "{link}\n{} uses until {} (invite {})\n",
                invite["uses"],
                crate::admission::utc_time(invite["expires"].as_u64().unwrap_or(0)),
                invite["id"].as_str().unwrap_or("?"),
            )
        }
        room => table(&[room]),
    })
}

fn patch(room: &str, body: Value) -> (Method, String, Option<Value>) {
    (Method::PATCH, format!("/api/rooms/{room}"), Some(body))
}

async fn call(
    target: &Target,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, CtlError> {
    let unreachable = |message: String| CtlError::Unreachable {
        addr: target.addr.clone(),
        message,
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", target.addr.trim_end_matches('/')))
        .header("x-antre-operator", target.operator.as_str())
        .header("content-type", "application/json");
    if let Some(token) = &target.token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| unreachable(e.to_string()))?;
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
            .await
            .map_err(|_| unreachable("no answer within 10 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status != StatusCode::OK {
        let problems = value["problems"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|p| !p.is_empty());
        let message = problems
            .or_else(|| value["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| status.to_string());
        return Err(CtlError::Refused(format!("{status}: {message}")));
    }
    Ok(value)
}

/// Rooms as a table a person reads at a glance.
fn table(rooms: &[Value]) -> String {
    let header = [
        "room",
        "waiting",
        "admitted",
        "last min",
        "rate/min",
        "quota left",
        "paused",
        "drains in",
        "store",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for room in rooms {
        let number = |key: &str| room[key].as_u64().map_or("-".to_owned(), |n| n.to_string());
        let drains = room["drains_in_seconds"]
            .as_u64()
            .map_or("-".to_owned(), |s| format!("{}m{:02}s", s / 60, s % 60));
        rows.push(vec![
            match room["campaign"].as_str() {
                Some(campaign) => format!("{} ({campaign})", room["id"].as_str().unwrap_or("?")),
                None => room["id"].as_str().unwrap_or("?").to_owned(),
            },
            number("waiting"),
            number("admitted"),
            number("admitted_last_minute"),
            number("admit_per_minute"),
            room["quota_left"]
                .as_u64()
                .map_or("none".to_owned(), |n| n.to_string()),
            if room["paused"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            drains,
            room["store"].as_str().unwrap_or("?").to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 || c == 6 || c == 8 {
                    format!("{cell:<width$}", width = widths[c])
                } else {
                    format!("{cell:>width$}", width = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
