// The queue page's updater; page.rs wraps it as (function(A){...})(config).
// It polls A.url, rewrites every [data-antre] element in place, hides every
// [data-antre-if] element whose value is empty, and reloads the page when the
// state it shows is no longer true. ES5 on purpose: cheap phones run old
// browsers. Keep `eta` in step with `format_eta` in page.rs.
var shown = A.state, wait = A.refresh, fails = 0, note = null;
function each(sel, f) {
  var els = document.querySelectorAll(sel);
  for (var i = 0; i < els.length; i++) f(els[i]);
}
function set(k, s) {
  each('[data-antre="' + k + '"]', function (e) { if (e.textContent !== s) e.textContent = s; });
  each('[data-antre-if="' + k + '"]', function (e) { e.hidden = !s; });
}
function apply(v) { for (var k in v) set(k, v[k]); }
function num(n) { return n == null ? "" : String(n).replace(/\B(?=(\d{3})+(?!\d))/g, A.sep); }
function two(n) { return (n < 10 ? "0" : "") + n; }
function clock(u) {
  if (u == null) return "";
  var d = new Date((u + A.off * 60) * 1000);
  return two(d.getUTCHours()) + ":" + two(d.getUTCMinutes()) + ":" + two(d.getUTCSeconds()) + " " + A.zone;
}
function fill(t, a, b) { return t.replace("{a}", a).replace("{b}", b); }
function eta(r) {
  var E = A.t.eta, M = 60, H = 3600, lo = Math.min(r[0], r[1]), hi = Math.max(r[0], r[1]);
  if (hi <= M) return E.under_minute;
  if (lo >= 24 * H) return E.over_day;
  var a = Math.floor(lo / M), b = Math.ceil(hi / M);
  if (b <= 90) {
    if (b > 20) { if (a >= 5) a = Math.floor(a / 5) * 5; b = Math.ceil(b / 5) * 5; }
    return fill(a == 0 ? E.up_to_minutes : a == b ? E.about_minutes : E.range_minutes, a, b);
  }
  a = Math.floor((lo + H / 2) / H); b = Math.ceil(hi / H);
  return fill(a == 0 ? E.up_to_hours : a == b ? E.about_hours : E.range_hours, a, b);
}
// Keep in step with `format_countdown` in page.rs.
function countdown(n) {
  var t = two(Math.floor(n % 86400 / 3600)) + ":" + two(Math.floor(n / 60) % 60) + ":" + two(n % 60);
  var d = Math.floor(n / 86400);
  return d > 0 ? A.t.countdown_days.replace("{d}", d).replace("{t}", t) : t;
}
// The opening is counted down on this device's clock from the seconds the
// server said were left, so a phone whose clock is wrong still shows the
// right time; at zero the page reloads (spread over a second or two).
var deadline = null, ticking = false;
function opening(left) {
  deadline = left == null ? null : Date.now() + left * 1000;
  if (deadline != null && !ticking) { ticking = true; tick(); }
}
function tick() {
  if (deadline == null) { ticking = false; return; }
  var n = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
  set("countdown", countdown(n));
  if (n == 0) { ticking = false; deadline = null; setTimeout(reload, 2000 * Math.random()); return; }
  setTimeout(tick, 1000);
}
function values(s) {
  opening(s.opens_at != null && s.updated_at ? Math.max(0, s.opens_at - s.updated_at) : null);
  return {
    number: num(s.ticket),
    position: num(s.position),
    ahead: num(s.ahead),
    eta: s.state != "waiting" ? "" : s.eta_range_seconds ? eta(s.eta_range_seconds) : A.t.eta_none,
    quota_left: num(s.quota_left),
    updated: clock(s.updated_at),
    beyond_quota: s.beyond_quota ? A.t.beyond_quota : "",
    requeued: s.requeued ? A.t.requeued : ""
  };
}
function offline(on) {
  if (!note) {
    if (!on) return;
    note = document.querySelector("[data-antre-offline]");
    if (!note) {
      // A custom template may have no place for the note: pin one to the bottom.
      note = document.createElement("p");
      note.setAttribute("role", "status");
      note.style.cssText = "position:fixed;left:0;right:0;bottom:0;margin:0;padding:.75em;background:#333;color:#fff;text-align:center";
      document.body.appendChild(note);
    }
    note.textContent = A.t.offline;
  }
  note.hidden = !on;
}
// Jitter spreads the polls of thousands of visitors, above all after an outage.
function later(s) { setTimeout(poll, s * (800 + 400 * Math.random())); }
// If the reload cannot happen (offline), keep polling instead of stopping.
function reload() { location.reload(); later(wait); }
function poll() {
  fetch(A.url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
    .then(function (r) {
      // 404: the ticket is gone. On the origin-trouble page any answer means
      // antre is reachable, so reloading retries the origin.
      if (r.status == 404 || (r.ok && shown == "origin_trouble")) return reload();
      if (!r.ok) throw r.status;
      return r.json().then(function (s) {
        if (!s || !s.state) throw 0;
        if (s.state != shown) return reload();
        fails = 0;
        offline(false);
        if (s.refresh_seconds > 0) wait = s.refresh_seconds;
        apply(values(s));
        // Near the front antre says exactly when the turn comes: ask then.
        if (s.poll_after_millis > 0 && s.poll_after_millis <= wait * 1000) setTimeout(poll, s.poll_after_millis);
        else later(wait);
      });
    })
    .catch(function () {
      fails++;
      offline(true);
      later(Math.min(Math.max(60, wait), wait * Math.pow(2, fails)));
    });
}
if (window.fetch) {
  apply(A.v);
  if (A.opens_in != null) opening(A.opens_in);
  later(wait);
} else {
  setTimeout(function () { location.reload(); }, wait * 1000);
}
