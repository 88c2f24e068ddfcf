// antre's proof-of-work solver: finds a decimal n such that
// SHA-256(challenge + "." + n) starts with `bits` zero bits.
//
// The message is at most a few blocks long and only its end changes, so
// the blocks before the counter are hashed once (the "midstate") and each
// try hashes the last block or two. Several workers share the search,
// each taking every k-th counter. Plain ES5, no dependencies.
(function antreWork(root) {
  "use strict";
  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ];
  var IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

  // One block: `w` holds its 16 words (and room for 64); `h` the state.
  function compress(h, w) {
    var i, a, b, c, d, e, f, g, hh, t1, t2;
    for (i = 16; i < 64; i++) {
      a = w[i - 15];
      b = w[i - 2];
      w[i] = (w[i - 16] + ((a >>> 7 | a << 25) ^ (a >>> 18 | a << 14) ^ (a >>> 3)) + w[i - 7] +
        ((b >>> 17 | b << 15) ^ (b >>> 19 | b << 13) ^ (b >>> 10))) | 0;
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; hh = h[7];
    for (i = 0; i < 64; i++) {
      t1 = (hh + ((e >>> 6 | e << 26) ^ (e >>> 11 | e << 21) ^ (e >>> 25 | e << 7)) +
        ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      t2 = (((a >>> 2 | a << 30) ^ (a >>> 13 | a << 19) ^ (a >>> 22 | a << 10)) +
        ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + hh) | 0;
  }

  // Searches counters start, start + step, ... for up to `tries` of them.
  // Returns the counter found, or -1.
  function search(challenge, bits, start, step, tries) {
    var prefix = challenge + ".";
    var full = prefix.length - (prefix.length % 64);
    var mid = IV.slice(0);
    var w = new Array(64);
    var i, j;
    for (i = 0; i < full; i += 64) {
      for (j = 0; j < 16; j++) {
        w[j] = (prefix.charCodeAt(i + 4 * j) << 24) | (prefix.charCodeAt(i + 4 * j + 1) << 16) |
          (prefix.charCodeAt(i + 4 * j + 2) << 8) | prefix.charCodeAt(i + 4 * j + 3);
      }
      compress(mid, w);
    }
    var rest = prefix.slice(full);
    var h = new Array(8);
    var bytes = new Array(128);
    var mask = bits >= 32 ? -1 : ~(0xffffffff >>> bits);
    for (var n = start, t = 0; t < tries; n += step, t++) {
      var tail = rest + n;
      var len = tail.length;
      for (i = 0; i < len; i++) bytes[i] = tail.charCodeAt(i);
      bytes[len] = 0x80;
      var blocks = len + 9 > 64 ? 2 : 1;
      var end = blocks * 64;
      for (i = len + 1; i < end - 4; i++) bytes[i] = 0;
      var bitLen = (full + len) * 8;
      bytes[end - 4] = (bitLen >>> 24) & 255; bytes[end - 3] = (bitLen >>> 16) & 255;
      bytes[end - 2] = (bitLen >>> 8) & 255; bytes[end - 1] = bitLen & 255;
      for (i = 0; i < 8; i++) h[i] = mid[i];
      for (var b = 0; b < end; b += 64) {
        for (j = 0; j < 16; j++) {
          w[j] = (bytes[b + 4 * j] << 24) | (bytes[b + 4 * j + 1] << 16) |
            (bytes[b + 4 * j + 2] << 8) | bytes[b + 4 * j + 3];
        }
        compress(h, w);
      }
      if ((h[0] & mask) === 0) return n;
    }
    return -1;
  }

  root.antreSearch = search;

  // In a page: read the challenge, solve it in workers (or here, in
  // slices, when workers are not allowed), set the cookie, ask again.
  if (typeof document === "undefined") return;
  var el = document.getElementById("antre-work");
  if (!el) return;
  var challenge = el.getAttribute("data-challenge");
  var bits = +el.getAttribute("data-bits");
  var cookie = el.getAttribute("data-cookie");
  var secure = el.getAttribute("data-secure") === "1";
  var progress = document.getElementById("antre-progress");
  var started = Date.now();
  var done = false;
  var tried = 0;

  function finish(n) {
    if (done) return;
    done = true;
    document.cookie = cookie + "=" + challenge + "." + n + "; Path=/; Max-Age=300; SameSite=Lax" +
      (secure ? "; Secure" : "");
    el.setAttribute("data-solved", String(n));
    el.setAttribute("data-millis", String(Date.now() - started));
    location.replace(location.href);
  }

  function show() {
    if (progress) progress.textContent = Math.round(tried / 1000) + "k";
  }

  var SLICE = 20000;
  function alone() {
    var next = 0;
    (function step() {
      if (done) return;
      var n = search(challenge, bits, next, 1, SLICE);
      next += SLICE;
      tried += SLICE;
      show();
      if (n >= 0) finish(n); else setTimeout(step, 0);
    })();
  }

  var count = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2));
  var source = "var antreSearch;(" + antreWork.toString() + ")(self);" +
    "onmessage=function(e){var d=e.data,n=d.start;for(;;){var f=antreSearch(d.challenge,d.bits,n,d.step," +
    SLICE + ");if(f>=0){postMessage({found:f});return}n+=d.step*" + SLICE + ";postMessage({tried:" + SLICE + "})}};";
  var workers = [];
  try {
    var url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    for (var i = 0; i < count; i++) {
      var worker = new Worker(url);
      worker.onmessage = function (e) {
        if (e.data.found !== undefined) {
          for (var j = 0; j < workers.length; j++) workers[j].terminate();
          finish(e.data.found);
        } else {
          tried += e.data.tried;
          show();
        }
      };
      worker.onerror = function () {
        for (var j = 0; j < workers.length; j++) workers[j].terminate();
        workers = [];
        if (!done) alone();
      };
      workers.push(worker);
      worker.postMessage({ challenge: challenge, bits: bits, start: i, step: count });
    }
  } catch (e) {
    for (var k = 0; k < workers.length; k++) workers[k].terminate();
    workers = [];
    alone();
  }
})(typeof self !== "undefined" ? self : typeof globalThis !== "undefined" ? globalThis : this);
