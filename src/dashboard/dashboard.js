/* antre operators' dashboard: polls the admin API and draws it. */
(function () {
  'use strict';

  var TOKEN_KEY = 'antre-admin-token';
  var NAME_KEY = 'antre-operator';
  var POLL_MS = 2000;
  var AUDIT_MS = 5000;
  var TIMEOUT_MS = 8000;
  var MAX_RATE = 600000;

  var $ = function (id) { return document.getElementById(id); };
  var state = { rooms: [], series: null, lastOk: 0, error: null, seriesError: null, signIn: false };
  var views = {};
  var memory = {};

  // Storage can throw (privacy modes); fall back to memory for this page.
  function load(area, key) {
    try { var v = window[area].getItem(key); return v === null ? memory[key] || '' : v; } catch (e) { return memory[key] || ''; }
  }
  function save(area, key, value) {
    memory[key] = value;
    try { if (value) window[area].setItem(key, value); else window[area].removeItem(key); } catch (e) { /* memory only */ }
  }
  function token() { return load('sessionStorage', TOKEN_KEY).trim(); }

  // Header values must be visible ASCII, or fetch throws and the server ignores them.
  function operatorName() {
    var n = load('localStorage', NAME_KEY);
    if (n.normalize) n = n.normalize('NFD');
    n = n.replace(/[^\x20-\x7e]/g, '').trim().slice(0, 64);
    return n || 'dashboard';
  }

  // === API ===

  function ApiError(status, message) { this.status = status; this.message = message; }

  function api(path, method, body) {
    var headers = { Accept: 'application/json' };
    var t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    var init = { method: method || 'GET', headers: headers, cache: 'no-store', credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['X-Antre-Operator'] = operatorName();
      init.body = JSON.stringify(body);
    }
    var abort = window.AbortController ? new AbortController() : null;
    var timer = 0;
    if (abort) {
      init.signal = abort.signal;
      timer = setTimeout(function () { abort.abort(); }, TIMEOUT_MS);
    }
    return fetch('api/' + path, init).then(function (res) {
      return res.text().then(function (text) {
        clearTimeout(timer);
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (res.status === 401) { askSignIn(); throw new ApiError(401, 'sign-in needed'); }
        if (!res.ok) throw new ApiError(res.status, explain(data) || ('HTTP ' + res.status + ' ' + res.statusText).trim());
        if (data === null) throw new ApiError(res.status, 'the answer is not JSON');
        return data;
      });
    }, function (e) {
      clearTimeout(timer);
      if (e && e.name === 'AbortError') throw new ApiError(0, 'no answer in ' + TIMEOUT_MS / 1000 + ' s');
      throw new ApiError(0, (e && e.message) || 'network error');
    });
  }

  function explain(data) {
    if (!data || typeof data !== 'object') return '';
    if (Array.isArray(data.problems) && data.problems.length) return data.problems.join('; ');
    return typeof data.message === 'string' ? data.message : (typeof data.error === 'string' ? data.error : '');
  }

  // === polling ===

  var pollTimer = 0, polling = false, pollAgain = false, auditTimer = 0;

  function poll() {
    clearTimeout(pollTimer);
    if (state.signIn) return;
    if (polling) { pollAgain = true; return; }
    polling = true;
    var series = api('series').then(function (s) { state.seriesError = null; return s; }, function (e) {
      if (e.status === 401) throw e;
      state.seriesError = e;
      return null;
    });
    Promise.all([api('rooms'), series]).then(function (r) {
      state.rooms = Array.isArray(r[0]) ? r[0].filter(function (x) { return x && typeof x === 'object'; }) : [];
      if (r[1] && typeof r[1] === 'object') state.series = r[1];
      state.lastOk = Date.now();
      state.error = null;
      render();
    }, function (e) {
      state.error = e;
    }).then(function () {
      polling = false;
      showStatus();
      if (pollAgain) { pollAgain = false; poll(); } else if (!state.signIn) pollTimer = setTimeout(poll, POLL_MS);
    });
  }

  var auditSeen = '', auditBusy = false, auditAgain = false;
  function pollAudit() {
    clearTimeout(auditTimer);
    if (state.signIn) return;
    if (auditBusy) { auditAgain = true; return; }
    auditBusy = true;
    api('audit').then(renderAudit, function () { /* the status line already tells */ }).then(function () {
      auditBusy = false;
      if (auditAgain) { auditAgain = false; pollAudit(); } else if (!state.signIn) auditTimer = setTimeout(pollAudit, AUDIT_MS);
    });
  }

  function showStatus() {
    var el = $('status');
    var text, cls = 'status';
    var ago = state.lastOk ? Math.max(0, Math.round((Date.now() - state.lastOk) / 1000)) : -1;
    if (state.signIn) {
      text = 'sign in to see the rooms';
      cls += ' is-warn';
    } else if (state.error) {
      text = 'cannot reach antre: ' + state.error.message + (ago >= 0 ? ' · last update ' + duration(ago) + ' ago' : '');
      cls += ' is-error';
    } else if (ago >= 0) {
      text = 'updated ' + duration(ago) + ' ago';
      if (state.seriesError) { text += ' · charts: ' + state.seriesError.message; cls += ' is-warn'; }
    } else {
      text = 'connecting…';
    }
    setText(el, text);
    if (el.className !== cls) el.className = cls;
    $('rooms').classList.toggle('is-stale', !!(state.signIn || state.error));
  }

  // === sign-in ===

  function askSignIn() {
    if (state.signIn) return;
    state.signIn = true;
    var form = $('signin');
    form.hidden = false;
    setText($('signin-msg'), token() ? 'That token was not accepted. Check it and try again.' : '');
    $('signin-name').value = load('localStorage', NAME_KEY);
    $('token').value = '';
    $('token').focus();
    showStatus();
  }

  function signIn(ev) {
    ev.preventDefault();
    var t = $('token').value.trim();
    if (!t) { setText($('signin-msg'), 'Enter the admin token.'); return; }
    save('sessionStorage', TOKEN_KEY, t);
    setName($('signin-name').value);
    $('signin').hidden = true;
    state.signIn = false;
    state.error = null;
    showSignOut();
    showStatus();
    poll();
    pollAudit();
  }

  function setName(value) {
    save('localStorage', NAME_KEY, value.trim().slice(0, 64));
    var who = $('who');
    if (document.activeElement !== who) who.value = load('localStorage', NAME_KEY);
  }

  function showSignOut() { $('sign-out').hidden = !token(); }

  // === formatting ===

  function num(x) { return typeof x === 'number' && isFinite(x) ? x : null; }
  function count(x) { x = num(x); return x === null ? '—' : x.toLocaleString('en-US'); }

  function duration(s) {
    s = num(s);
    if (s === null) return '—';
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + ' s';
    if (s < 3600) { var m = Math.floor(s / 60), r = s % 60; return m + ' min' + (r ? ' ' + r + ' s' : ''); }
    if (s < 86400) { var h = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60); return h + ' h' + (mm ? ' ' + mm + ' min' : ''); }
    var d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600);
    return d + ' d' + (hh ? ' ' + hh + ' h' : '');
  }

  function spanLabel(s) {
    if (s < 120) return Math.round(s) + ' s';
    if (s < 7200) return Math.round(s / 60) + ' min';
    return Math.round(s / 3600) + ' h';
  }

  function compact(v) {
    var a = Math.abs(v);
    if (a >= 1e6) return +(v / 1e6).toFixed(1) + 'M';
    if (a >= 1e4) return +(v / 1e3).toFixed(0) + 'k';
    if (a >= 1e3) return +(v / 1e3).toFixed(1) + 'k';
    return String(+v.toFixed(a < 10 ? 1 : 0));
  }

  function clock(at) {
    var d = new Date(at * 1000);
    if (isNaN(d.getTime())) return '—';
    var p = function (n) { return (n < 10 ? '0' : '') + n; };
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }

  // === rooms ===

  function render() {
    var rooms = state.rooms;
    var box = $('rooms');
    var seen = {};
    var total = 0;
    rooms.forEach(function (room, i) {
      var id = String(room.id == null ? 'room-' + i : room.id);
      seen[id] = true;
      var v = views[id] || (views[id] = makeView(id));
      if (box.children[i] !== v.el) box.insertBefore(v.el, box.children[i] || null);
      update(v, room);
      total += num(room.waiting) || 0;
    });
    Object.keys(views).forEach(function (id) {
      if (!seen[id]) { box.removeChild(views[id].el); delete views[id]; }
    });
    $('no-rooms').hidden = rooms.length > 0;
    document.title = (rooms.length ? total.toLocaleString('en-US') + ' waiting · ' : '') + 'antre · operators';
  }

  function makeView(id) {
    var el = $('room-template').content.firstElementChild.cloneNode(true);
    el.setAttribute('data-room', id);
    var q = function (s) { return el.querySelector(s); };
    var v = { id: id, el: el, room: {}, k: {}, busy: false, rateShown: '', quotaShown: '' };
    Array.prototype.forEach.call(el.querySelectorAll('[data-k]'), function (n) { v.k[n.getAttribute('data-k')] = n; });
    ['title', 'rid', 'badges', 'paths', 'warn', 'bar', 'fill', 'quota-text', 'rate', 'quota-input', 'set-rate',
      'set-quota', 'toggle-pause', 'msg', 'chart-waiting', 'chart-admissions', 'chart-origin'].forEach(function (c) {
      v[c] = q('.' + c);
    });
    var h = q('h2');
    h.id = 'room-' + id.replace(/[^\w-]/g, '_');
    el.setAttribute('aria-labelledby', h.id);
    q('.rate-form').addEventListener('submit', function (e) { e.preventDefault(); setRate(v); });
    q('.quota-form').addEventListener('submit', function (e) { e.preventDefault(); setQuota(v); });
    v['toggle-pause'].addEventListener('click', function () { togglePause(v); });
    // An input the operator has touched keeps their value until they send it or press Escape.
    [['rate', 'rateShown'], ['quota-input', 'quotaShown']].forEach(function (p) {
      var input = v[p[0]];
      input.addEventListener('input', function () { input.classList.toggle('edited', input.value !== v[p[1]]); });
      input.addEventListener('keydown', function (e) {
        if (e.key === 'Escape') { input.value = v[p[1]]; input.classList.remove('edited'); input.removeAttribute('aria-invalid'); }
      });
    });
    return v;
  }

  function prefill(input, value) {
    if (document.activeElement === input || input.classList.contains('edited')) return;
    if (input.value !== value) input.value = value;
  }

  function update(v, r) {
    v.room = r;
    var id = v.id;
    var paused = r.paused === true, soldOut = r.sold_out === true, storeDown = r.store != null && r.store !== 'ok';
    var waiting = num(r.waiting), rate = num(r.admit_per_minute), configured = num(r.configured_admit_per_minute);
    var quota = num(r.quota), admitted = num(r.admitted), left = num(r.quota_left);

    setText(v.title, r.title ? String(r.title) : id);
    setText(v.rid, id);
    setText(v.paths, Array.isArray(r.paths) ? r.paths.join('  ') : '');

    var badges = [];
    if (storeDown) badges.push(['Store unavailable', 'down']);
    if (soldOut) badges.push(['Sold out', 'sold']);
    if (paused) badges.push(['Paused', 'paused']);
    if (!badges.length) badges.push(['Running', 'run']);
    var key = JSON.stringify(badges);
    if (v.badges.getAttribute('data-key') !== key) {
      v.badges.setAttribute('data-key', key);
      v.badges.textContent = '';
      badges.forEach(function (b) {
        var s = document.createElement('span');
        s.className = 'badge badge-' + b[1];
        s.textContent = b[0];
        v.badges.appendChild(s);
      });
    }
    v.el.classList.toggle('is-down', storeDown);
    v.el.classList.toggle('is-sold', soldOut && !storeDown);
    v.el.classList.toggle('is-paused', paused && !soldOut && !storeDown);
    v.warn.hidden = !storeDown;
    setText(v.warn, storeDown ? 'The store cannot be reached: these numbers are this instance\'s last view and changes may fail.' : '');

    var k = v.k;
    setText(k.waiting, count(waiting));
    setText(k['waiting-note'], num(r.tail) !== null && num(r.frontier) !== null ? 'tail ' + count(r.tail) + ' · frontier ' + count(r.frontier) : '');
    setText(k.admitted, count(admitted));
    setText(k['admitted-note'], num(r.pass_minutes) !== null ? 'passes last ' + r.pass_minutes + ' min' : '');
    setText(k['last-minute'], count(r.admitted_last_minute));
    setText(k.rate, rate === null ? '—' : count(rate) + '/min');
    setText(k['rate-note'], rate === null || configured === null ? '' : rate !== configured ? 'set live, config says ' + count(configured) : 'as configured');
    var why = paused ? 'paused' : waiting === 0 ? 'nobody waiting' : '';
    setText(k['last-wait'], duration(r.last_in_line_wait_seconds));
    setText(k['last-wait-note'], r.last_in_line_wait_seconds == null ? why : '');
    setText(k.drains, duration(r.drains_in_seconds));
    setText(k['drains-note'], r.drains_in_seconds == null ? why : '');
    setText(k['runs-out'], duration(r.quota_runs_out_in_seconds));
    setText(k['runs-out-note'], r.quota_runs_out_in_seconds == null ? (quota === null ? 'no quota' : soldOut ? 'sold out' : paused ? 'paused' : '') : '');

    // Quota bar.
    var bar = v.bar;
    if (quota === null) {
      bar.removeAttribute('aria-valuenow');
      bar.removeAttribute('aria-valuemax');
      bar.setAttribute('aria-valuetext', 'no quota');
      v.fill.style.width = '0';
      setText(v['quota-text'], 'no quota');
    } else {
      var used = admitted === null ? (left === null ? null : Math.max(0, quota - left)) : admitted;
      if (left === null && used !== null) left = Math.max(0, quota - used);
      var text = used === null ? 'quota ' + count(quota) : count(used) + ' of ' + count(quota) + ' used, ' + count(left) + ' left';
      bar.setAttribute('aria-valuemax', String(quota));
      bar.setAttribute('aria-valuenow', String(Math.min(used || 0, quota)));
      bar.setAttribute('aria-valuetext', text);
      v.fill.style.width = (quota > 0 ? Math.min(100, (used || 0) / quota * 100) : 100).toFixed(2) + '%';
      setText(v['quota-text'], text);
    }
    bar.setAttribute('aria-label', 'Quota of ' + id);
    bar.classList.toggle('is-sold', soldOut);

    // Controls.
    v.rateShown = rate === null ? '' : String(rate);
    v.quotaShown = quota === null ? '' : String(quota);
    prefill(v.rate, v.rateShown);
    prefill(v['quota-input'], v.quotaShown);
    setText(v['toggle-pause'], paused ? 'Resume' : 'Pause');
    v['toggle-pause'].classList.toggle('resume', paused);
    v['toggle-pause'].setAttribute('aria-label', (paused ? 'Resume ' : 'Pause ') + id);
    busy(v, v.busy);

    drawCharts(v);
  }

  // === charts ===

  function drawCharts(v) {
    var s = state.series || {};
    var step = num(s.step_seconds) || 2;
    var rows = s.rooms && Array.isArray(s.rooms[v.id]) ? s.rooms[v.id] : [];
    var origin = Array.isArray(s.origin) ? s.origin : [];
    var pick = function (list, f) {
      return list.filter(function (p) { return p && num(p.at) !== null; }).map(function (p) { return { at: p.at, v: num(p[f]) }; });
    };
    chart(v['chart-waiting'], pick(rows, 'waiting'), step, 'Waiting', '', v.k['c-waiting']);
    chart(v['chart-admissions'], pick(rows, 'admitted_per_minute'), step, 'Admissions', ' per minute', v.k['c-admissions']);
    chart(v['chart-origin'], pick(origin, 'ms'), step, 'Origin response time', ' ms', v.k['c-origin']);
  }

  function niceCeil(x) {
    if (!(x > 0)) return 1;
    var e = Math.pow(10, Math.floor(Math.log(x) / Math.LN10));
    var m = x / e;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * e;
  }

  function chart(canvas, pts, step, name, unit, caption) {
    var last = pts.length ? pts[pts.length - 1].v : null;
    var now = last === null ? 'no data now' : +last.toFixed(1) + unit + ' now';
    canvas.setAttribute('aria-label', name + ': ' + now);
    setText(caption, last === null ? '—' : compact(last) + unit.replace(' per minute', '/min'));

    var w = canvas.clientWidth, h = canvas.clientHeight;
    var ctx = w && h ? canvas.getContext('2d') : null;
    if (!ctx) { canvas.setAttribute('data-points', '0'); return; }
    var dpr = window.devicePixelRatio || 1;
    var W = Math.round(w * dpr), H = Math.round(h * dpr);
    if (canvas.width !== W) canvas.width = W;
    if (canvas.height !== H) canvas.height = H;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    var css = getComputedStyle(canvas);
    var col = function (n, d) { return css.getPropertyValue(n).trim() || d; };
    var line = col('--line', '#1f6feb'), area = col('--area', 'rgba(31,111,235,.12)');
    var grid = col('--grid', '#e3e6ea'), ink = col('--ink-2', '#5b6470');
    ctx.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.textBaseline = 'middle';

    var max = 0, n = 0;
    pts.forEach(function (p) { if (p.v !== null) { n++; if (p.v > max) max = p.v; } });
    var top = niceCeil(max);
    var padL = Math.ceil(Math.max(ctx.measureText(compact(top)).width, ctx.measureText(compact(top / 2)).width)) + 8;
    var padR = 6, padT = 8, padB = 20;
    var pw = Math.max(1, w - padL - padR), ph = Math.max(1, h - padT - padB);

    // Grid and value ticks.
    ctx.strokeStyle = grid;
    ctx.fillStyle = ink;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    [0, 0.5, 1].forEach(function (f) {
      var y = Math.round(padT + ph - f * ph) + 0.5;
      ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(padL + pw, y); ctx.stroke();
      ctx.fillText(compact(top * f), padL - 5, y);
    });

    if (!n) {
      ctx.textAlign = 'center';
      ctx.fillText('no data yet', padL + pw / 2, padT + ph / 2);
      canvas.setAttribute('data-points', '0');
      return;
    }

    var t0 = pts[0].at, t1 = pts[pts.length - 1].at, span = t1 - t0;
    var X = function (at) { return span > 0 ? padL + (at - t0) / span * pw : padL + pw; };
    var Y = function (val) { return padT + ph - Math.min(val, top) / top * ph; };

    // Time ticks: the span, its middle, now.
    ctx.textBaseline = 'alphabetic';
    var by = h - 5;
    ctx.textAlign = 'right';
    ctx.fillText('now', padL + pw, by);
    if (span > 0) {
      ctx.textAlign = 'left';
      ctx.fillText('\u2212' + spanLabel(span), padL, by);
      if (pw > 200) { ctx.textAlign = 'center'; ctx.fillText('\u2212' + spanLabel(span / 2), padL + pw / 2, by); }
    }

    // Segments break at nulls and at gaps longer than two steps (a restart, a missed sample).
    var segs = [], cur = null, prevAt = null;
    pts.forEach(function (p) {
      var gap = prevAt !== null && p.at - prevAt > step * 2.5;
      prevAt = p.at;
      if (p.v === null || gap) { if (cur) segs.push(cur); cur = null; }
      if (p.v !== null) { (cur = cur || []).push(p); }
    });
    if (cur) segs.push(cur);

    var base = padT + ph;
    segs.forEach(function (sg) {
      if (sg.length === 1) {
        ctx.fillStyle = line;
        ctx.beginPath(); ctx.arc(X(sg[0].at), Y(sg[0].v), 2, 0, Math.PI * 2); ctx.fill();
        return;
      }
      ctx.beginPath();
      ctx.moveTo(X(sg[0].at), base);
      sg.forEach(function (p) { ctx.lineTo(X(p.at), Y(p.v)); });
      ctx.lineTo(X(sg[sg.length - 1].at), base);
      ctx.closePath();
      ctx.fillStyle = area;
      ctx.fill();
      ctx.beginPath();
      sg.forEach(function (p, i) { if (i) ctx.lineTo(X(p.at), Y(p.v)); else ctx.moveTo(X(p.at), Y(p.v)); });
      ctx.strokeStyle = line;
      ctx.lineWidth = 1.75;
      ctx.lineJoin = 'round';
      ctx.stroke();
    });
    canvas.setAttribute('data-points', String(n));
  }

  // === changes ===

  function say(v, text, kind) {
    v.msg.className = 'msg' + (kind ? ' is-' + kind : '');
    v.msg.textContent = text ? clock(Date.now() / 1000) + '  ' + text : '';
  }

  function busy(v, on) {
    v.busy = on;
    var off = on || v.room.id == null;
    ['set-rate', 'set-quota', 'toggle-pause'].forEach(function (c) { v[c].disabled = off; });
  }

  function change(v, body, question, what, done) {
    if (v.busy) return;
    if (!window.confirm(question)) { say(v, 'Cancelled; nothing changed.'); return; }
    busy(v, true);
    say(v, 'Sending…');
    api('rooms/' + encodeURIComponent(v.id), 'PATCH', body).then(function (room) {
      if (room && typeof room === 'object' && !Array.isArray(room)) {
        state.rooms = state.rooms.map(function (r) { return String(r.id) === v.id ? room : r; });
        update(v, room);
      }
      say(v, done(room || {}), 'ok');
    }, function (e) {
      say(v, e.status === 401 ? 'Sign in first; nothing was changed.' : 'Could not ' + what + ': ' + e.message, 'error');
    }).then(function () {
      busy(v, false);
      poll();
      pollAudit();
    });
  }

  function wholeNumber(input, min, max) {
    var s = input.value.trim();
    var n = /^\d+$/.test(s) ? Number(s) : NaN;
    return n >= min && n <= max ? n : null;
  }

  function invalid(v, input, text) {
    input.setAttribute('aria-invalid', 'true');
    say(v, text, 'error');
    input.focus();
  }

  function setRate(v) {
    var input = v.rate;
    var n = wholeNumber(input, 1, MAX_RATE);
    if (n === null) return invalid(v, input, 'The rate must be a whole number of admissions per minute, from 1 to ' + MAX_RATE.toLocaleString('en-US') + '.');
    input.removeAttribute('aria-invalid');
    var from = num(v.room.admit_per_minute);
    if (n === from) { input.classList.remove('edited'); return say(v, 'The rate of ' + v.id + ' is already ' + n + ' per minute; nothing to change.'); }
    change(v, { admit_per_minute: n },
      'Change the admission rate of "' + v.id + '" from ' + (from === null ? 'unknown' : from) + ' to ' + n + ' per minute?',
      'set the rate of ' + v.id,
      function (room) {
        input.classList.remove('edited');
        return 'Rate of ' + v.id + ' set to ' + (num(room.admit_per_minute) === null ? n : room.admit_per_minute) + ' per minute';
      });
  }

  function setQuota(v) {
    var input = v['quota-input'];
    var none = input.value.trim() === '';
    var n = none ? null : wholeNumber(input, 1, Number.MAX_SAFE_INTEGER);
    if (!none && n === null) return invalid(v, input, 'The quota must be a whole number from 1 up, or empty for no quota.');
    input.removeAttribute('aria-invalid');
    var from = num(v.room.quota), admitted = num(v.room.admitted);
    if (n === from) { input.classList.remove('edited'); return say(v, 'The quota of ' + v.id + ' is already ' + (n === null ? 'unset' : n) + '; nothing to change.'); }
    var q = n === null
      ? 'Remove the quota of "' + v.id + '"? Admissions continue with no limit.'
      : 'Change the quota of "' + v.id + '" from ' + (from === null ? 'none' : from) + ' to ' + n + '?' +
        (admitted !== null && n <= admitted ? ' ' + admitted + ' are already admitted, so the room will be sold out.' : '');
    change(v, { quota: n }, q, 'change the quota of ' + v.id, function () {
      input.classList.remove('edited');
      return n === null ? 'Quota of ' + v.id + ' removed' : 'Quota of ' + v.id + ' set to ' + n;
    });
  }

  function togglePause(v) {
    var pausing = v.room.paused !== true;
    var rate = num(v.room.admit_per_minute);
    change(v, { paused: pausing },
      pausing
        ? 'Pause "' + v.id + '"? Nobody is admitted until it is resumed; places are kept.'
        : 'Resume "' + v.id + '"? Admissions restart' + (rate === null ? '.' : ' at ' + rate + ' per minute.'),
      (pausing ? 'pause ' : 'resume ') + v.id,
      function () { return v.id + (pausing ? ' paused' : ' resumed'); });
  }

  // === audit ===

  function renderAudit(list) {
    if (!Array.isArray(list)) list = [];
    var recent = list.slice(-20).reverse();
    var key = JSON.stringify(recent);
    if (key === auditSeen) return;
    auditSeen = key;
    var body = $('audit');
    body.textContent = '';
    recent.forEach(function (e) {
      if (!e || typeof e !== 'object') return;
      var tr = document.createElement('tr');
      [clock(num(e.at)), e.who, e.room, e.change === undefined ? '' : JSON.stringify(e.change)].forEach(function (t, i) {
        var td = document.createElement('td');
        td.textContent = t == null ? '' : String(t);
        if (i === 3) td.className = 'mono';
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    $('audit-empty').hidden = recent.length > 0;
  }

  // === start ===

  function start() {
    $('signin').addEventListener('submit', signIn);
    var who = $('who');
    who.value = load('localStorage', NAME_KEY);
    who.addEventListener('change', function () { setName(who.value); });
    $('sign-out').addEventListener('click', function () {
      save('sessionStorage', TOKEN_KEY, '');
      showSignOut();
      poll();
    });
    showSignOut();
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
