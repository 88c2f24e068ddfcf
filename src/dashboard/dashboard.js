/* antre operators' dashboard: polls the admin API, draws it, sends changes. */
(function () {
  'use strict';

  var TOKEN_KEY = 'antre-admin-token', NAME_KEY = 'antre-operator';
  var POLL_MS = 2000, AUDIT_MS = 5000, TIMEOUT_MS = 8000, MAX_RATE = 600000;

  var $ = function (id) { return document.getElementById(id); };
  var state = { rooms: [], series: {}, lastOk: 0, error: null, seriesError: null, signIn: false };
  var views = {}, memory = {};

  // Storage can throw (privacy modes); memory keeps the page working.
  function load(area, key) {
    try { var v = window[area].getItem(key); if (v !== null) return v; } catch (e) { /* memory */ }
    return memory[key] || '';
  }
  function save(area, key, value) {
    memory[key] = value;
    try { if (value) window[area].setItem(key, value); else window[area].removeItem(key); } catch (e) { /* memory */ }
  }
  function token() { return load('sessionStorage', TOKEN_KEY).trim(); }

  // Header values must be visible ASCII: fetch throws on others and antre ignores them.
  function operatorName() {
    var n = load('localStorage', NAME_KEY);
    n = (n.normalize ? n.normalize('NFD') : n).replace(/[^\x20-\x7e]/g, '').trim().slice(0, 64);
    return n || 'dashboard';
  }

  // === API ===

  function ApiError(status, message) { this.status = status; this.message = message; }

  function api(path, method, body) {
    var headers = { Accept: 'application/json' }, t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    var init = { method: method || 'GET', headers: headers, cache: 'no-store', credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['X-Antre-Operator'] = operatorName();
      init.body = JSON.stringify(body);
    }
    var abort = window.AbortController && new AbortController();
    if (abort) init.signal = abort.signal;
    var timer = setTimeout(function () { if (abort) abort.abort(); }, TIMEOUT_MS);
    return fetch('api/' + path, init).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
        if (res.status === 401) { askSignIn(); throw new ApiError(401, 'sign-in needed'); }
        if (!res.ok) throw new ApiError(res.status, explain(data) || ('HTTP ' + res.status + ' ' + res.statusText).trim());
        if (data === null) throw new ApiError(res.status, 'the answer is not JSON');
        return data;
      });
    }, function (e) {
      throw new ApiError(0, e && e.name === 'AbortError' ? 'no answer in ' + TIMEOUT_MS / 1000 + ' s' : (e && e.message) || 'network error');
    }).then(function (data) { clearTimeout(timer); return data; }, function (e) { clearTimeout(timer); throw e; });
  }

  function explain(d) {
    if (!d || typeof d !== 'object') return '';
    if (Array.isArray(d.problems) && d.problems.length) return d.problems.join('; ');
    return typeof d.message === 'string' ? d.message : typeof d.error === 'string' ? d.error : '';
  }

  // === polling ===

  // Runs work every ms, never two at once; run() asks for a fresh round now.
  function poller(ms, work) {
    var timer = 0, running = false, again = false;
    return function run() {
      clearTimeout(timer);
      if (state.signIn) return;
      if (running) { again = true; return; }
      running = true;
      work().then(null, function () { /* shown by the status line */ }).then(function () {
        running = false;
        if (again) { again = false; run(); } else if (!state.signIn) timer = setTimeout(run, ms);
      });
    };
  }

  var poll = poller(POLL_MS, function () {
    var series = api('series').then(function (s) { state.seriesError = null; return s; }, function (e) {
      if (e.status === 401) throw e;
      state.seriesError = e;
      return null;
    });
    return Promise.all([api('rooms'), series]).then(function (r) {
      state.rooms = Array.isArray(r[0]) ? r[0].filter(function (x) { return x && typeof x === 'object'; }) : [];
      if (r[1] && typeof r[1] === 'object') state.series = r[1];
      state.lastOk = Date.now();
      state.error = null;
      render();
    }, function (e) { state.error = e; }).then(showStatus);
  });

  var pollAudit = poller(AUDIT_MS, function () { return api('audit').then(renderAudit); });

  function showStatus() {
    var el = $('status'), cls = 'status', text = 'connecting…';
    var ago = state.lastOk ? ' ' + duration((Date.now() - state.lastOk) / 1000) + ' ago' : '';
    if (state.signIn) {
      text = 'sign in to see the rooms';
      cls += ' is-warn';
    } else if (state.error) {
      text = 'cannot reach antre: ' + state.error.message + (ago ? ' · last update' + ago : '');
      cls += ' is-error';
    } else if (ago) {
      text = 'updated' + ago;
      if (state.seriesError) { text += ' · charts: ' + state.seriesError.message; cls += ' is-warn'; }
    }
    setText(el, text);
    el.className = cls;
    $('rooms').classList.toggle('is-stale', !!(state.signIn || state.error));
  }

  // === sign-in ===

  function askSignIn() {
    if (state.signIn) return;
    state.signIn = true;
    $('signin').hidden = false;
    setText($('signin-msg'), token() ? 'That token was not accepted. Check it and try again.' : '');
    $('signin-name').value = load('localStorage', NAME_KEY);
    $('token').value = '';
    $('token').focus();
    showStatus();
  }

  function signIn(ev) {
    ev.preventDefault();
    var t = $('token').value.trim();
    if (!t) return setText($('signin-msg'), 'Enter the admin token.');
    save('sessionStorage', TOKEN_KEY, t);
    setName($('signin-name').value);
    $('signin').hidden = true;
    state.signIn = false;
    state.error = null;
    $('sign-out').hidden = false;
    showStatus();
    poll();
    pollAudit();
  }

  function setName(value) {
    save('localStorage', NAME_KEY, value.trim().slice(0, 64));
    $('who').value = load('localStorage', NAME_KEY);
  }

  // === formatting ===

  function num(x) { return typeof x === 'number' && isFinite(x) ? x : null; }
  function count(x) { x = num(x); return x === null ? '—' : x.toLocaleString('en-US'); }

  function duration(s) {
    s = num(s);
    if (s === null) return '—';
    s = Math.max(0, Math.round(s));
    var units = [[86400, 'd', 3600, 'h'], [3600, 'h', 60, 'min'], [60, 'min', 1, 's']];
    for (var i = 0; i < units.length; i++) {
      var u = units[i];
      if (s >= u[0]) {
        var big = Math.floor(s / u[0]), small = Math.floor(s % u[0] / u[2]);
        return big + ' ' + u[1] + (small ? ' ' + small + ' ' + u[3] : '');
      }
    }
    return s + ' s';
  }

  function compact(v) {
    var a = Math.abs(v);
    if (a >= 1e6) return +(v / 1e6).toFixed(1) + 'M';
    if (a >= 1e3) return +(v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + 'k';
    return String(+v.toFixed(a < 10 ? 1 : 0));
  }

  function clock(at) {
    var d = new Date(at * 1000);
    if (at === null || isNaN(d)) return '—';
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map(function (n) { return (n < 10 ? '0' : '') + n; }).join(':');
  }

  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }

  // === rooms ===

  function render() {
    var box = $('rooms'), seen = {}, total = 0;
    state.rooms.forEach(function (room, i) {
      var id = room.id == null ? 'room-' + i : String(room.id);
      seen[id] = true;
      var v = views[id] || (views[id] = makeView(id));
      if (box.children[i] !== v.el) box.insertBefore(v.el, box.children[i] || null);
      update(v, room);
      total += num(room.waiting) || 0;
    });
    Object.keys(views).forEach(function (id) {
      if (!seen[id]) { box.removeChild(views[id].el); delete views[id]; }
    });
    $('no-rooms').hidden = state.rooms.length > 0;
    document.title = (state.rooms.length ? count(total) + ' waiting · ' : '') + 'antre · operators';
  }

  function makeView(id) {
    var el = $('room-template').content.firstElementChild.cloneNode(true);
    var v = { id: id, el: el, room: {}, k: {}, busy: false, rateShown: '' };
    el.setAttribute('data-room', id);
    Array.prototype.forEach.call(el.querySelectorAll('[data-k]'), function (n) { v.k[n.getAttribute('data-k')] = n; });
    'title rid badges paths warn bar fill quota-text rate set-rate toggle-pause msg chart-waiting chart-admissions chart-origin'
      .split(' ').forEach(function (c) { v[c] = el.querySelector('.' + c); });
    var h = el.querySelector('h2');
    h.id = 'room-' + id.replace(/[^\w-]/g, '_');
    el.setAttribute('aria-labelledby', h.id);
    el.querySelector('.rate-form').addEventListener('submit', function (e) { e.preventDefault(); setRate(v); });
    v['toggle-pause'].addEventListener('click', function () { togglePause(v); });
    // A touched input keeps the operator's value until it is sent or Escape is pressed.
    v.rate.addEventListener('input', function () { v.rate.classList.toggle('edited', v.rate.value !== v.rateShown); });
    v.rate.addEventListener('keydown', function (e) {
      if (e.key === 'Escape') { v.rate.value = v.rateShown; v.rate.classList.remove('edited'); v.rate.removeAttribute('aria-invalid'); }
    });
    return v;
  }

  function update(v, r) {
    v.room = r;
    var id = v.id, k = v.k;
    var paused = r.paused === true, soldOut = r.sold_out === true, down = r.store != null && r.store !== 'ok';
    var waiting = num(r.waiting), rate = num(r.admit_per_minute), configured = num(r.configured_admit_per_minute);
    var quota = num(r.quota), admitted = num(r.admitted), left = num(r.quota_left);

    setText(v.title, r.title ? String(r.title) : id);
    setText(v.rid, r.campaign ? id + ' · segment of ' + r.campaign : id);
    setText(v.paths, Array.isArray(r.paths) ? r.paths.join('  ') : '');

    var badges = [[down, 'Store unavailable', 'down'], [soldOut, 'Sold out', 'sold'], [paused, 'Paused', 'paused']]
      .filter(function (b) { return b[0]; });
    if (!badges.length) badges.push([true, 'Running', 'run']);
    var key = badges.join('|');
    if (v.badges.getAttribute('data-key') !== key) {
      v.badges.setAttribute('data-key', key);
      v.badges.textContent = '';
      badges.forEach(function (b) {
        var s = v.badges.appendChild(document.createElement('span'));
        s.className = 'badge badge-' + b[2];
        s.textContent = b[1];
      });
    }
    v.el.classList.toggle('is-down', down);
    v.el.classList.toggle('is-sold', soldOut && !down);
    v.el.classList.toggle('is-paused', paused && !soldOut && !down);
    v.warn.hidden = !down;
    setText(v.warn, down ? 'The store cannot be reached: these numbers are this instance\'s last view, and changes may fail.' : '');

    setText(k.waiting, count(waiting));
    setText(k['waiting-note'], num(r.tail) !== null && num(r.frontier) !== null ? 'tail ' + count(r.tail) + ' · frontier ' + count(r.frontier) : '');
    setText(k.admitted, count(admitted));
    setText(k['admitted-note'], num(r.pass_minutes) !== null ? 'passes last ' + r.pass_minutes + ' min' : '');
    setText(k['last-minute'], count(r.admitted_last_minute));
    setText(k.rate, rate === null ? '—' : count(rate) + '/min');
    setText(k['rate-note'], rate === null || configured === null ? '' : rate !== configured ? 'set live, config says ' + count(configured) : 'as configured');
    // Say why an estimate is missing.
    var why = paused ? 'paused' : waiting === 0 ? 'nobody waiting' : '';
    [['last-wait', r.last_in_line_wait_seconds, why], ['drains', r.drains_in_seconds, why],
      ['runs-out', r.quota_runs_out_in_seconds, quota === null ? 'no quota' : soldOut ? 'sold out' : paused ? 'paused' : '']]
      .forEach(function (f) {
        setText(k[f[0]], duration(f[1]));
        setText(k[f[0] + '-note'], num(f[1]) === null ? f[2] : '');
      });

    var bar = v.bar, text = 'no quota', used = null;
    if (quota !== null) {
      used = admitted !== null ? admitted : left !== null ? Math.max(0, quota - left) : null;
      if (left === null && used !== null) left = Math.max(0, quota - used);
      text = used === null ? 'quota ' + count(quota) : count(used) + ' of ' + count(quota) + ' used, ' + count(left) + ' left';
      bar.setAttribute('aria-valuemax', String(quota));
      bar.setAttribute('aria-valuenow', String(Math.min(used || 0, quota)));
    } else {
      bar.removeAttribute('aria-valuenow');
      bar.removeAttribute('aria-valuemax');
    }
    bar.setAttribute('aria-valuetext', text);
    bar.setAttribute('aria-label', 'Quota of ' + id);
    bar.classList.toggle('is-sold', soldOut);
    v.fill.style.width = quota ? Math.min(100, (used || 0) / quota * 100).toFixed(2) + '%' : '0';
    setText(v['quota-text'], text);

    v.rateShown = rate === null ? '' : String(rate);
    if (document.activeElement !== v.rate && !v.rate.classList.contains('edited') && v.rate.value !== v.rateShown) v.rate.value = v.rateShown;
    setText(v['toggle-pause'], paused ? 'Resume' : 'Pause');
    v['toggle-pause'].classList.toggle('resume', paused);
    v['toggle-pause'].setAttribute('aria-label', (paused ? 'Resume ' : 'Pause ') + id);
    busy(v, v.busy);
    drawCharts(v);
  }

  // === charts ===

  function drawCharts(v) {
    var s = state.series || {}, step = num(s.step_seconds) || 2;
    var rows = s.rooms && Array.isArray(s.rooms[v.id]) ? s.rooms[v.id] : [];
    var pick = function (list, f) {
      return (Array.isArray(list) ? list : []).filter(function (p) { return p && num(p.at) !== null; })
        .map(function (p) { return { at: p.at, v: num(p[f]) }; });
    };
    chart(v['chart-waiting'], pick(rows, 'waiting'), step, 'Waiting', '', v.k['c-waiting']);
    chart(v['chart-admissions'], pick(rows, 'admitted_per_minute'), step, 'Admissions', ' per minute', v.k['c-admissions']);
    chart(v['chart-origin'], pick(s.origin, 'ms'), step, 'Origin response time', ' ms', v.k['c-origin']);
  }

  function niceCeil(x) {
    if (!(x > 0)) return 1;
    var e = Math.pow(10, Math.floor(Math.log(x) / Math.LN10)), m = x / e;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * e;
  }

  function spanLabel(s) {
    return '\u2212' + (s < 120 ? Math.round(s) + ' s' : s < 7200 ? Math.round(s / 60) + ' min' : Math.round(s / 3600) + ' h');
  }

  function chart(canvas, pts, step, name, unit, caption) {
    var last = pts.length ? pts[pts.length - 1].v : null;
    canvas.setAttribute('aria-label', name + ': ' + (last === null ? 'no data now' : +last.toFixed(1) + unit + ' now'));
    setText(caption, last === null ? '—' : compact(last) + unit.replace(' per minute', '/min'));

    var w = canvas.clientWidth, h = canvas.clientHeight, ctx = w && h && canvas.getContext('2d');
    var n = 0, max = 0;
    if (!ctx) return canvas.setAttribute('data-points', '0');
    var dpr = window.devicePixelRatio || 1, W = Math.round(w * dpr), H = Math.round(h * dpr);
    if (canvas.width !== W) canvas.width = W;
    if (canvas.height !== H) canvas.height = H;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    // Colours come from CSS so the light and dark themes stay in one place.
    var css = getComputedStyle(canvas), col = function (p) { return css.getPropertyValue(p).trim(); };
    var line = col('--line') || '#1f62d6', ink = col('--ink-2') || '#5b6470';
    ctx.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 1;
    ctx.strokeStyle = col('--grid') || '#e8eaee';
    ctx.fillStyle = ink;

    pts.forEach(function (p) { if (p.v !== null) { n++; max = Math.max(max, p.v); } });
    var top = niceCeil(max);
    var padL = Math.ceil(Math.max(ctx.measureText(compact(top)).width, ctx.measureText(compact(top / 2)).width)) + 8;
    var padT = 8, pw = Math.max(1, w - padL - 6), ph = Math.max(1, h - padT - 20), base = padT + ph;

    ctx.textAlign = 'right';
    [0, 0.5, 1].forEach(function (f) {
      var y = Math.round(base - f * ph) + 0.5;
      ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(padL + pw, y); ctx.stroke();
      ctx.fillText(compact(top * f), padL - 5, y);
    });
    canvas.setAttribute('data-points', String(n));
    if (!n) {
      ctx.textAlign = 'center';
      return ctx.fillText('no data yet', padL + pw / 2, padT + ph / 2);
    }

    var t0 = pts[0].at, span = pts[pts.length - 1].at - t0;
    var X = function (at) { return span > 0 ? padL + (at - t0) / span * pw : padL + pw; };
    var Y = function (val) { return base - Math.min(val, top) / top * ph; };

    ctx.textBaseline = 'alphabetic';
    ctx.fillText('now', padL + pw, h - 5);
    if (span > 0) {
      ctx.textAlign = 'left';
      ctx.fillText(spanLabel(span), padL, h - 5);
      if (pw > 200) { ctx.textAlign = 'center'; ctx.fillText(spanLabel(span / 2), padL + pw / 2, h - 5); }
    }

    // Lines break at nulls and at gaps longer than two steps (a restart, a missed sample).
    var segs = [], cur = null, prev = null;
    pts.forEach(function (p) {
      if (p.v === null || (prev !== null && p.at - prev > step * 2.5)) cur = null;
      prev = p.at;
      if (p.v !== null) { if (!cur) segs.push(cur = []); cur.push(p); }
    });
    ctx.strokeStyle = ctx.fillStyle = line;
    ctx.lineWidth = 1.75;
    ctx.lineJoin = 'round';
    segs.forEach(function (sg) {
      var a = sg[0], z = sg[sg.length - 1];
      if (sg.length === 1) {
        ctx.beginPath(); ctx.arc(X(a.at), Y(a.v), 2, 0, 7); ctx.fill();
        return;
      }
      ctx.beginPath();
      sg.forEach(function (p, i) { ctx[i ? 'lineTo' : 'moveTo'](X(p.at), Y(p.v)); });
      ctx.stroke();
      ctx.lineTo(X(z.at), base);
      ctx.lineTo(X(a.at), base);
      ctx.globalAlpha = 0.12;
      ctx.fill();
      ctx.globalAlpha = 1;
    });
  }

  // === changes ===

  function say(v, text, kind) {
    v.msg.className = 'msg' + (kind ? ' is-' + kind : '');
    v.msg.textContent = clock(Date.now() / 1000) + '  ' + text;
  }

  function busy(v, on) {
    v.busy = on;
    v['set-rate'].disabled = v['toggle-pause'].disabled = on || v.room.id == null;
  }

  function change(v, body, question, what, done) {
    if (v.busy) return;
    if (!window.confirm(question)) return say(v, 'Cancelled; nothing changed.');
    busy(v, true);
    say(v, 'Sending…');
    api('rooms/' + encodeURIComponent(v.id), 'PATCH', body).then(function (room) {
      if (room && typeof room === 'object' && !Array.isArray(room)) {
        state.rooms = state.rooms.map(function (r) { return String(r.id) === v.id ? room : r; });
        update(v, room);
      }
      say(v, done(room || {}), 'ok');
    }, function (e) {
      // With no answer at all the change may still have landed; Recent changes will tell.
      say(v, e.status === 401 ? 'Sign in first; nothing was changed.' : 'Could not ' + what + ': ' + e.message +
        (e.status ? '' : '. It may still have been applied; check Recent changes.'), 'error');
    }).then(function () {
      busy(v, false);
      poll();
      pollAudit();
    });
  }

  function setRate(v) {
    var input = v.rate, s = input.value.trim(), n = /^\d+$/.test(s) ? Number(s) : 0;
    if (!(n >= 1 && n <= MAX_RATE)) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return say(v, 'The rate must be a whole number of admissions per minute, from 1 to ' + count(MAX_RATE) + '.', 'error');
    }
    input.removeAttribute('aria-invalid');
    var from = num(v.room.admit_per_minute);
    if (n === from) {
      input.classList.remove('edited');
      return say(v, 'The rate of ' + v.id + ' is already ' + n + ' per minute; nothing to change.');
    }
    change(v, { admit_per_minute: n },
      'Change the admission rate of "' + v.id + '" from ' + (from === null ? 'unknown' : from) + ' to ' + n + ' per minute?',
      'set the rate of ' + v.id,
      function (room) {
        input.classList.remove('edited');
        return 'Rate of ' + v.id + ' set to ' + (num(room.admit_per_minute) === null ? n : room.admit_per_minute) + ' per minute';
      });
  }

  function togglePause(v) {
    var pausing = v.room.paused !== true, rate = num(v.room.admit_per_minute);
    change(v, { paused: pausing },
      pausing
        ? 'Pause "' + v.id + '"? Nobody is admitted until it is resumed; places are kept.'
        : 'Resume "' + v.id + '"? Admissions restart' + (rate === null ? '.' : ' at ' + rate + ' per minute.'),
      (pausing ? 'pause ' : 'resume ') + v.id,
      function () { return v.id + (pausing ? ' paused' : ' resumed'); });
  }

  // === audit ===

  var auditSeen = '';
  function renderAudit(list) {
    var recent = (Array.isArray(list) ? list : []).slice(-20).reverse().filter(function (e) { return e && typeof e === 'object'; });
    var key = JSON.stringify(recent);
    if (key === auditSeen) return;
    auditSeen = key;
    var body = $('audit');
    body.textContent = '';
    recent.forEach(function (e) {
      var tr = body.appendChild(document.createElement('tr'));
      [clock(num(e.at)), e.who, e.room, e.change === undefined ? '' : JSON.stringify(e.change)].forEach(function (t) {
        tr.appendChild(document.createElement('td')).textContent = t == null ? '' : String(t);
      });
    });
    $('audit-empty').hidden = recent.length > 0;
  }

  // === start ===

  function start() {
    $('signin').addEventListener('submit', signIn);
    $('who').value = load('localStorage', NAME_KEY);
    $('who').addEventListener('change', function () { setName($('who').value); });
    $('sign-out').hidden = !token();
    $('sign-out').addEventListener('click', function () {
      save('sessionStorage', TOKEN_KEY, '');
      $('sign-out').hidden = true;
      poll();
    });
    var redraw = 0;
    window.addEventListener('resize', function () {
      clearTimeout(redraw);
      redraw = setTimeout(function () { Object.keys(views).forEach(function (id) { drawCharts(views[id]); }); }, 100);
    });
    setInterval(showStatus, 1000);
    poll();
    pollAudit();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
