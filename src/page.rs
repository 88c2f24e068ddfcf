//! The queue page: the HTML a visitor sees while waiting (and its sold-out,
//! paused and origin-trouble siblings), in Indonesian and English, from the
//! built-in design or an operator's template.
//!
//! Citizens read this page on cheap phones over slow links, so it is one
//! self-contained document well under 20 KB: inline CSS, no external assets.
//! It works without JavaScript (a `<noscript>` meta refresh reloads it); with
//! JavaScript a small inline script (`page/updater.js`) polls the status URL,
//! rewrites the numbers in place and reloads only when the state changes.
//!
//! Every text a visitor reads comes from one table per language (`Texts`),
//! and the script receives the strings it needs from the same table, so the
//! server-rendered page and the live updates always say the same thing.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use crate::status::{Notice, State, Status};

/// The page's stylesheet, inlined into the built-in page.
const STYLE: &str = include_str!("page/style.css");
/// The updater script; see the comment at its top for its contract.
const UPDATER: &str = include_str!("page/updater.js");

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

// === impl Lang ===

/// A language the page speaks. Indonesian is the default: antre is built for
/// Indonesian public services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Id,
    En,
}

impl Lang {
    /// Every language, in the order the language switch lists them.
    pub const ALL: [Lang; 2] = [Lang::Id, Lang::En];

    /// The BCP 47 code used in `<html lang>`, the language cookie and the
    /// switch links.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    /// Reads a language tag, ignoring case and any region (`en-US`, `id_ID`).
    /// `in` is the old ISO 639 code for Indonesian, still sent by some
    /// Android phones.
    pub fn from_code(s: &str) -> Option<Lang> {
        let primary = s.trim().split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("id") || primary.eq_ignore_ascii_case("in") {
            Some(Lang::Id)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The language's name in itself, as the switch shows it.
    fn own_name(self) -> &'static str {
        match self {
            Lang::Id => "Bahasa Indonesia",
            Lang::En => "English",
        }
    }

    fn texts(self) -> &'static Texts {
        match self {
            Lang::Id => &ID,
            Lang::En => &EN,
        }
    }

    /// Thousands separator: Indonesian writes 1.234, English 1,234.
    fn digit_separator(self) -> char {
        match self {
            Lang::Id => '.',
            Lang::En => ',',
        }
    }
}

/// Picks the page language. The visitor's own choice (the language cookie)
/// wins when it names a language we speak; otherwise the best-rated supported
/// language in `Accept-Language` (ties go to the one listed first); otherwise
/// Indonesian. Malformed header entries are skipped, never fatal.
pub fn negotiate(accept_language: Option<&str>, chosen: Option<&str>) -> Lang {
    if let Some(lang) = chosen.and_then(Lang::from_code) {
        return lang;
    }
    accept_language.and_then(best_accepted).unwrap_or_default()
}

/// The supported language with the highest q-value in an `Accept-Language`
/// header, or `None` when it names none (or only with `q=0`).
fn best_accepted(header: &str) -> Option<Lang> {
    let mut best: Option<(Lang, f32)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let Some(lang) = parts.next().and_then(Lang::from_code) else {
            continue;
        };
        let mut q = 1.0_f32;
        let mut valid = true;
        for param in parts {
            let param = param.trim();
            if let Some(value) = param
                .strip_prefix("q=")
                .or_else(|| param.strip_prefix("Q="))
            {
                match value.trim().parse::<f32>() {
                    Ok(v) if (0.0..=1.0).contains(&v) => q = v,
                    _ => valid = false,
                }
            }
        }
        if valid && q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((lang, q));
        }
    }
    best.map(|(lang, _)| lang)
}

// === impl PageKind ===

/// Which page a visitor gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// Holding a ticket beyond the frontier: place, wait and quota.
    Waiting,
    /// The quota is used up: nothing more will be admitted for now.
    SoldOut,
    /// The operator paused admissions; places are kept.
    Paused,
    /// Outside the room's schedule: when it opens next, with a countdown.
    Closed,
    /// Shown to admitted visitors when the origin fails: no numbers, only
    /// "your access is kept, this page retries by itself".
    OriginTrouble,
}

impl PageKind {
    /// The page for a visitor's state; `None` for `Admitted`, whose requests
    /// go to the origin.
    pub fn for_state(state: State) -> Option<PageKind> {
        match state {
            State::Admitted => None,
            State::Waiting => Some(PageKind::Waiting),
            State::SoldOut => Some(PageKind::SoldOut),
            State::Paused => Some(PageKind::Paused),
            State::Closed => Some(PageKind::Closed),
        }
    }

    /// The `state` this page stands for. The script reloads as soon as the
    /// status endpoint reports another one, so a page never outlives its truth.
    fn shown_state(self) -> &'static str {
        match self {
            PageKind::Waiting => "waiting",
            PageKind::SoldOut => "sold_out",
            PageKind::Paused => "paused",
            PageKind::Closed => "closed",
            PageKind::OriginTrouble => "origin_trouble",
        }
    }

    /// Whether the page shows the place-in-line card.
    fn shows_place(self) -> bool {
        matches!(
            self,
            PageKind::Waiting | PageKind::Paused | PageKind::Closed
        )
    }
}

/// Everything a page is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct PageContext<'a> {
    pub kind: PageKind,
    pub lang: Lang,
    pub status: &'a Status,
    /// The room's display title from the config (e.g. "Vaksinasi Kota Malang").
    pub title: &'a str,
    /// URL the page's script polls, e.g. "/_antre/status?room=vaksin".
    pub status_url: &'a str,
    /// Prefix of the language-switch links; the link for a language is
    /// `format!("{lang_switch_url}{}", lang.code())`, e.g.
    /// "/_antre/lang?back=%2Fdaftar&set=" + "en". Already URL-encoded; it is
    /// HTML-escaped when inserted.
    pub lang_switch_url: &'a str,
    /// Offset of the local time zone from UTC in minutes (420 = WIB).
    pub utc_offset_minutes: i32,
    /// The link that brings the visitor's return ticket to another browser
    /// (`/_antre/return?room=...`), when they hold one.
    pub return_url: Option<&'a str>,
}

// === impl Texts ===

/// What a page of one kind says: its headline, a lead paragraph and a few
/// reassuring notes.
struct KindCopy {
    headline: &'static str,
    lead: &'static str,
    notes: &'static [&'static str],
}

/// The ETA phrases. `{a}` is the lower bound, `{b}` the upper; both are at
/// least 2 wherever they appear, so no phrase needs a singular form.
struct EtaTexts {
    under_minute: &'static str,
    up_to_minutes: &'static str,
    about_minutes: &'static str,
    range_minutes: &'static str,
    up_to_hours: &'static str,
    about_hours: &'static str,
    range_hours: &'static str,
    over_day: &'static str,
}

/// Every text of the page in one language.
struct Texts {
    switch_label: &'static str,
    footer: &'static str,
    waiting: KindCopy,
    paused: KindCopy,
    sold_out: KindCopy,
    closed: KindCopy,
    origin_trouble: KindCopy,
    /// The visitor's ticket number, as the organiser would call it out.
    number: &'static str,
    position: &'static str,
    ahead: &'static str,
    eta: &'static str,
    quota_left: &'static str,
    updated: &'static str,
    eta_none: &'static str,
    beyond_quota: &'static str,
    requeued: &'static str,
    pass_shared: &'static str,
    ticket_spent: &'static str,
    offline: &'static str,
    /// When the room opens next: `{when}` is a date and time.
    opens: &'static str,
    /// Above the countdown to the opening.
    countdown: &'static str,
    /// A countdown of a day or more: `{d}` days, `{t}` hours:minutes:seconds.
    countdown_days: &'static str,
    /// A place kept for the next phase: `{number}` is the visitor's number,
    /// `{when}` when that phase opens.
    kept: &'static str,
    /// Before the link that brings a kept place to another browser.
    keep_link: &'static str,
    /// The link's text.
    return_link: &'static str,
    /// In the draw at the opening: `{when}`, `{entry}`, `{commitment}`.
    draw: &'static str,
    months: [&'static str; 12],
    eta_phrases: EtaTexts,
}

impl Texts {
    fn copy(&self, kind: PageKind) -> &KindCopy {
        match kind {
            PageKind::Waiting => &self.waiting,
            PageKind::Paused => &self.paused,
            PageKind::SoldOut => &self.sold_out,
            PageKind::Closed => &self.closed,
            PageKind::OriginTrouble => &self.origin_trouble,
        }
    }
}

static ID: Texts = Texts {
    switch_label: "Pilih bahasa",
    footer: "Ruang tunggu virtual ini menjaga situs tetap dapat diakses dan melayani \
             setiap orang sesuai urutan kedatangan.",
    waiting: KindCopy {
        headline: "Anda sedang dalam antrean",
        lead: "Saat ini banyak orang mengakses situs ini. Agar adil, setiap orang \
               dipersilakan masuk bergiliran sesuai urutan kedatangan.",
        notes: &[
            "Biarkan halaman ini tetap terbuka. Memuat ulang halaman tidak akan \
             menghilangkan posisi Anda.",
            "Saat tiba giliran Anda, Anda akan diarahkan masuk secara otomatis.",
        ],
    },
    paused: KindCopy {
        headline: "Antrean sedang dijeda",
        lead: "Penyelenggara menghentikan sementara proses masuk. Posisi Anda tetap \
               tersimpan.",
        notes: &[
            "Biarkan halaman ini tetap terbuka. Halaman ini akan diperbarui dengan \
                  sendirinya begitu antrean berjalan kembali.",
        ],
    },
    sold_out: KindCopy {
        headline: "Kuota sudah habis",
        lead: "Mohon maaf, seluruh kuota saat ini sudah terpakai. Untuk sementara tidak \
               ada lagi pengunjung yang dapat masuk.",
        notes: &[
            "Terima kasih atas kesabaran Anda. Silakan ikuti pengumuman resmi \
             penyelenggara untuk jadwal berikutnya.",
            "Halaman ini akan diperbarui dengan sendirinya bila ada perubahan.",
        ],
    },
    closed: KindCopy {
        headline: "Pendaftaran belum dibuka",
        lead: "Ruang tunggu ini hanya menerima pendaftaran pada jadwal yang ditentukan \
               penyelenggara.",
        notes: &[
            "Biarkan halaman ini tetap terbuka. Halaman ini akan memuat ulang dengan \
             sendirinya saat pendaftaran dibuka.",
            "Datang lebih awal tidak membuat Anda lebih cepat masuk: nomor antrean \
             dibagikan sejak pendaftaran dibuka.",
        ],
    },
    origin_trouble: KindCopy {
        headline: "Situs sedang mengalami gangguan",
        lead: "Situs yang Anda tuju sedang bermasalah dan belum dapat melayani Anda. \
               Akses Anda tetap tersimpan.",
        notes: &[
            "Halaman ini akan mencoba lagi secara otomatis; Anda tidak perlu \
                  melakukan apa pun.",
        ],
    },
    number: "Nomor antrean Anda",
    position: "Posisi Anda dalam antrean",
    ahead: "Orang di depan Anda",
    eta: "Perkiraan waktu tunggu",
    quota_left: "Sisa kuota",
    updated: "Diperbarui pukul",
    eta_none: "Belum dapat diperkirakan saat ini",
    beyond_quota: "Jumlah orang di depan Anda lebih banyak daripada sisa kuota. Anda \
                   mungkin tidak mendapat giliran, kecuali ada orang di depan Anda yang \
                   meninggalkan antrean.",
    requeued: "Giliran Anda sebelumnya sudah lewat ketika Anda tidak membuka halaman \
               ini, sehingga Anda mendapat posisi baru dalam antrean.",
    pass_shared: "Izin masuk Anda dipakai dari terlalu banyak jaringan sekaligus, jadi \
                  izin itu tidak berlaku di sini. Izin masuk hanya untuk satu orang. Anda \
                  akan mendapat posisi baru di belakang antrean.",
    ticket_spent: "Nomor antrean ini sudah dipakai untuk masuk dan tidak bisa dipakai lagi. \
                   Anda akan mendapat posisi baru di belakang antrean.",
    offline: "Koneksi terputus. Mencoba lagi… Posisi Anda tetap tersimpan.",
    opens: "Pendaftaran berikutnya dibuka {when}.",
    countdown: "Dibuka dalam",
    countdown_days: "{d} hari {t}",
    kept: "Nomor antrean Anda, {number}, disimpan untuk sesi berikutnya yang dibuka pada \
           {when}. Anda tidak perlu mengantre lagi: kembalilah selama sesi itu dengan \
           peramban ini, dan Anda dipersilakan masuk lebih dulu daripada pendaftar baru, \
           sesuai urutan semula.",
    keep_link: "Untuk kembali dari perangkat atau peramban lain, simpan tautan ini. \
                Tautan ini hanya berlaku untuk satu orang dan satu kali masuk.",
    return_link: "Tautan kembali",
    draw: "Anda sudah masuk undian untuk pembukaan pada {when}. Saat pendaftaran dibuka, \
           semua yang datang sebelumnya diurutkan secara acak, jadi datang lebih awal tidak \
           memberi keuntungan. Nomor undian Anda: {entry}. Bukti undian (SHA-256 dari \
           benihnya, yang diumumkan setelah pembukaan): {commitment}.",
    months: [
        "Januari",
        "Februari",
        "Maret",
        "April",
        "Mei",
        "Juni",
        "Juli",
        "Agustus",
        "September",
        "Oktober",
        "November",
        "Desember",
    ],
    eta_phrases: EtaTexts {
        under_minute: "kurang dari 1 menit",
        up_to_minutes: "hingga {b} menit",
        about_minutes: "sekitar {a} menit",
        range_minutes: "{a}–{b} menit",
        up_to_hours: "hingga {b} jam",
        about_hours: "sekitar {a} jam",
        range_hours: "sekitar {a}–{b} jam",
        over_day: "lebih dari 1 hari",
    },
};

static EN: Texts = Texts {
    switch_label: "Choose language",
    footer: "This virtual waiting room keeps the site reachable and serves everyone \
             in the order they arrived.",
    waiting: KindCopy {
        headline: "You are in line",
        lead: "Many people are using this site right now. To be fair to everyone, \
               people are let in one by one, in the order they arrived.",
        notes: &[
            "Keep this tab open. Refreshing the page will not lose your place.",
            "When it is your turn, you will be let in automatically.",
        ],
    },
    paused: KindCopy {
        headline: "The line is paused",
        lead: "The organiser has paused admissions for now. Your place is kept.",
        notes: &[
            "Keep this tab open. This page updates itself as soon as the line \
                  moves again.",
        ],
    },
    sold_out: KindCopy {
        headline: "All places have been taken",
        lead: "We are sorry: all places available for now have been taken. No one else \
               can be let in for the time being.",
        notes: &[
            "Thank you for your patience. Please follow the organiser's official \
             announcements for the next opening.",
            "This page updates itself if anything changes.",
        ],
    },
    closed: KindCopy {
        headline: "Registration is not open yet",
        lead: "This waiting room takes registrations only at the times the organiser \
               has set.",
        notes: &[
            "Keep this tab open. This page reloads itself when registration opens.",
            "Coming early does not get you in sooner: numbers are handed out from the \
             moment registration opens.",
        ],
    },
    origin_trouble: KindCopy {
        headline: "The site is having trouble",
        lead: "The site you are visiting is having trouble and cannot serve you right \
               now. Your access is kept.",
        notes: &["This page will try again by itself; you do not need to do anything."],
    },
    number: "Your number",
    position: "Your place in line",
    ahead: "People ahead of you",
    eta: "Estimated wait",
    quota_left: "Places left",
    updated: "Updated at",
    eta_none: "Cannot be estimated right now",
    beyond_quota: "There are more people ahead of you than places left. You may not get \
                   in unless some of them leave the line.",
    requeued: "Your earlier turn came and went while you were away, so you have been \
               given a new place in line.",
    pass_shared: "Your pass has been used from too many networks at once, so it does not \
                  work here. A pass is for one person. You will get a new place at the \
                  back of the line.",
    ticket_spent: "This ticket has already been used to get in and cannot be used again. \
                   You will get a new place at the back of the line.",
    offline: "Connection lost. Retrying… your place is kept.",
    opens: "The next opening is on {when}.",
    countdown: "Opens in",
    countdown_days: "{d}d {t}",
    kept: "Your number, {number}, is kept for the next session, which opens on {when}. \
           You need not queue again: come back during that session with this browser and \
           you will be let in ahead of newcomers, in your original order.",
    keep_link: "To come back from another device or browser, keep this link. It is for \
                one person and lets them in once.",
    return_link: "Return link",
    draw: "You are in the draw for the opening on {when}. When registration opens, everyone \
           who came before it is put in a random order, so coming earlier gives no \
           advantage. Your entry: {entry}. The draw's commitment (SHA-256 of its seed, \
           which is published after the opening): {commitment}.",
    months: [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    eta_phrases: EtaTexts {
        under_minute: "less than a minute",
        up_to_minutes: "up to {b} minutes",
        about_minutes: "about {a} minutes",
        range_minutes: "{a}–{b} minutes",
        up_to_hours: "up to {b} hours",
        about_hours: "about {a} hours",
        range_hours: "about {a}–{b} hours",
        over_day: "more than a day",
    },
};

// === formatting ===

/// Formats an ETA range `[earliest, latest]` (seconds) for people, e.g.
/// "3–5 menit" / "3–5 minutes", "kurang dari 1 menit" / "less than a minute",
/// "sekitar 2–3 jam" / "about 2–3 hours".
///
/// The lower bound rounds down and the upper bound up, so the range never
/// claims more precision than it has; past 20 minutes the bounds round to
/// 5 minutes, past 90 minutes the range is given in hours, and from a day on
/// it says so. The bounds may come in either order. `updater.js` mirrors
/// this function for live updates.
pub fn format_eta(lang: Lang, range: [u64; 2]) -> String {
    let phrases = &lang.texts().eta_phrases;
    let (lo, hi) = (range[0].min(range[1]), range[0].max(range[1]));
    if hi <= MINUTE {
        return phrases.under_minute.to_owned();
    }
    if lo >= DAY {
        return phrases.over_day.to_owned();
    }
    let (mut a, mut b) = (lo / MINUTE, hi.div_ceil(MINUTE));
    if b <= 90 {
        if b > 20 {
            // Keep a small lower bound as it is: "3–25", not "up to 25".
            if a >= 5 {
                a = a / 5 * 5;
            }
            b = b.div_ceil(5) * 5;
        }
        let phrase = match a {
            0 => phrases.up_to_minutes,
            _ if a == b => phrases.about_minutes,
            _ => phrases.range_minutes,
        };
        return fill(phrase, a, b);
    }
    // `lo < DAY` here, so the addition cannot overflow.
    let (a, b) = ((lo + HOUR / 2) / HOUR, hi.div_ceil(HOUR));
    let phrase = match a {
        0 => phrases.up_to_hours,
        _ if a == b => phrases.about_hours,
        _ => phrases.range_hours,
    };
    fill(phrase, a, b)
}

fn fill(phrase: &str, a: u64, b: u64) -> String {
    phrase
        .replacen("{a}", &a.to_string(), 1)
        .replacen("{b}", &b.to_string(), 1)
}

/// The name of a UTC offset: WIB, WITA and WIT for Indonesia's three zones,
/// "UTC" for zero, else "UTC+05:30" / "UTC-03:00".
pub fn zone_name(utc_offset_minutes: i32) -> Cow<'static, str> {
    match utc_offset_minutes {
        420 => "WIB".into(),
        480 => "WITA".into(),
        540 => "WIT".into(),
        0 => "UTC".into(),
        offset => {
            let sign = if offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            format!("UTC{sign}{:02}:{:02}", abs / 60, abs % 60).into()
        }
    }
}

/// Formats a unix time as the local time of day with its zone, e.g.
/// "14:03:27 WIB": when the numbers on the page were last true.
pub fn format_updated(unix_seconds: u64, utc_offset_minutes: i32) -> String {
    let local = i128::from(unix_seconds) + i128::from(utc_offset_minutes) * 60;
    let of_day = local.rem_euclid(i128::from(DAY));
    format!(
        "{:02}:{:02}:{:02} {}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        zone_name(utc_offset_minutes)
    )
}

/// A moment as people read it in the page's zone and language:
/// "12 Juli 2021, 08:00 WIB" / "12 July 2021, 08:00 WIB".
pub fn format_opening(unix_seconds: u64, utc_offset_minutes: i32, lang: Lang) -> String {
    let local = unix_seconds as i64 + i64::from(utc_offset_minutes) * 60;
    let (year, month, day) = crate::clock::civil_from_days(local.div_euclid(86_400));
    let of_day = local.rem_euclid(86_400);
    let month_name = lang.texts().months[(month.clamp(1, 12) - 1) as usize];
    format!(
        "{day} {month_name} {year}, {:02}:{:02} {}",
        of_day / 3600,
        of_day / 60 % 60,
        zone_name(utc_offset_minutes)
    )
}

/// Time left until an opening: "01:59:30", or "2 hari 03:04:05" /
/// "2d 03:04:05" from a day on. `updater.js` mirrors it.
pub fn format_countdown(seconds: u64, lang: Lang) -> String {
    let clock = format!(
        "{:02}:{:02}:{:02}",
        seconds % DAY / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    match seconds / DAY {
        0 => clock,
        days => lang
            .texts()
            .countdown_days
            .replacen("{d}", &days.to_string(), 1)
            .replacen("{t}", &clock, 1),
    }
}

/// A count with the language's thousands separator: 12.345 / 12,345.
pub(crate) fn group_digits(n: u64, lang: Lang) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(lang.digit_separator());
        }
        out.push(c);
    }
    out
}

/// Text made safe for HTML content and quoted attribute values.
pub(crate) struct Html<'a>(pub(crate) &'a str);

impl fmt::Display for Html<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Appends `s` as a JSON string literal that is also safe inside `<script>`:
/// `<`, `>` and `&` are escaped so config text cannot close the element.
fn push_js_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a flat JSON object of string values.
fn push_js_object(out: &mut String, entries: &[(&str, &str)]) {
    out.push('{');
    push_js_entries(out, entries);
    out.push('}');
}

/// Appends `"key":"value"` pairs, comma-separated.
fn push_js_entries(out: &mut String, entries: &[(&str, &str)]) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_js_string(out, key);
        out.push(':');
        push_js_string(out, value);
    }
}

// === impl Values ===

/// The live values: what `updater.js` rewrites after each poll. Each is a
/// `data-antre` key and a template placeholder; empty means "not applicable"
/// and hides every `data-antre-if` element of that key.
struct Live {
    number: String,
    position: String,
    ahead: String,
    eta: String,
    quota_left: String,
    updated: String,
    beyond_quota: &'static str,
    requeued: &'static str,
    opens: String,
    countdown: String,
    /// The place kept for the next phase; not updated live (a change of
    /// state reloads the page).
    kept: String,
    /// The visitor's entry in the draw at the opening; not updated live
    /// either.
    draw: String,
}

impl Live {
    fn new(ctx: &PageContext) -> Live {
        let status = ctx.status;
        let texts = ctx.lang.texts();
        let updated = format_updated(status.updated_at, ctx.utc_offset_minutes);
        if ctx.kind == PageKind::OriginTrouble {
            // Admitted visitors have no place in line to show.
            return Live {
                number: String::new(),
                position: String::new(),
                ahead: String::new(),
                eta: String::new(),
                quota_left: String::new(),
                updated,
                beyond_quota: "",
                requeued: "",
                opens: String::new(),
                countdown: String::new(),
                kept: String::new(),
                draw: String::new(),
            };
        }
        let count = |n: Option<u64>| n.map(|n| group_digits(n, ctx.lang)).unwrap_or_default();
        // A wait computed from the rate would mislead while admissions are
        // paused, so only the waiting page gives one.
        let eta = match status.eta_range_seconds {
            _ if ctx.kind != PageKind::Waiting => String::new(),
            Some(range) => format_eta(ctx.lang, range),
            None => texts.eta_none.to_owned(),
        };
        let (opens, countdown) = match status.opens_at {
            Some(at) if matches!(ctx.kind, PageKind::Closed | PageKind::SoldOut) => (
                texts.opens.replacen(
                    "{when}",
                    &format_opening(at, ctx.utc_offset_minutes, ctx.lang),
                    1,
                ),
                format_countdown(at.saturating_sub(status.updated_at), ctx.lang),
            ),
            _ => (String::new(), String::new()),
        };
        let kept = match (status.kept_for, status.ticket) {
            (Some(at), Some(number)) => texts
                .kept
                .replacen("{number}", &group_digits(number, ctx.lang), 1)
                .replacen(
                    "{when}",
                    &format_opening(at, ctx.utc_offset_minutes, ctx.lang),
                    1,
                ),
            _ => String::new(),
        };
        let draw = match &status.draw {
            Some(entry) => texts
                .draw
                .replacen(
                    "{when}",
                    &format_opening(entry.opens_at, ctx.utc_offset_minutes, ctx.lang),
                    1,
                )
                .replacen("{entry}", &entry.entry.to_string(), 1)
                .replacen("{commitment}", &entry.commitment, 1),
            None => String::new(),
        };
        Live {
            number: count(status.ticket),
            position: count(status.position),
            ahead: count(status.ahead),
            eta,
            quota_left: count(status.quota_left),
            updated,
            beyond_quota: if status.beyond_quota {
                texts.beyond_quota
            } else {
                ""
            },
            requeued: match status.notice {
                Some(Notice::PassShared) => texts.pass_shared,
                Some(Notice::TicketSpent) => texts.ticket_spent,
                None if status.requeued => texts.requeued,
                None => "",
            },
            opens,
            countdown,
            kept,
            draw,
        }
    }

    fn entries(&self) -> [(&'static str, &str); 10] {
        [
            ("number", &self.number),
            ("position", &self.position),
            ("ahead", &self.ahead),
            ("eta", &self.eta),
            ("quota_left", &self.quota_left),
            ("updated", &self.updated),
            ("beyond_quota", self.beyond_quota),
            ("requeued", self.requeued),
            ("opens", &self.opens),
            ("countdown", &self.countdown),
        ]
    }
}

/// Everything the built-in page and templates insert, computed once per
/// render.
struct Values<'c> {
    ctx: &'c PageContext<'c>,
    texts: &'static Texts,
    copy: &'static KindCopy,
    live: Live,
    /// Seconds between refreshes; never 0, which would reload in a loop.
    refresh_seconds: u32,
}

impl<'c> Values<'c> {
    fn new(ctx: &'c PageContext<'c>) -> Values<'c> {
        let texts = ctx.lang.texts();
        Values {
            ctx,
            texts,
            copy: texts.copy(ctx.kind),
            live: Live::new(ctx),
            refresh_seconds: ctx.status.refresh_seconds.max(1),
        }
    }

    /// The value of `{{state}}`: the visitor's state, or "origin_trouble".
    fn state(&self) -> &'static str {
        match self.ctx.kind {
            PageKind::OriginTrouble => "origin_trouble",
            _ => self.ctx.status.state.as_str(),
        }
    }

    /// The lead and the notes as one paragraph, for `{{message}}`.
    fn message(&self) -> String {
        let mut message = self.copy.lead.to_owned();
        for note in self.copy.notes {
            message.push(' ');
            message.push_str(note);
        }
        message
    }

    /// `{{head}}`: the refresh for visitors without JavaScript (inside
    /// `<noscript>`, so script users are not reloaded under their feet), and
    /// a rule that keeps `hidden` rows hidden whatever the page's CSS says.
    fn head(&self) -> String {
        format!(
            "<noscript><meta http-equiv=\"refresh\" content=\"{}\"></noscript>\
             <style>[hidden]{{display:none!important}}</style>",
            self.refresh_seconds
        )
    }

    /// `{{lang_switch}}`: one link per language, each in its own language,
    /// the current one marked with `aria-current`.
    /// The return-ticket link, shown only beside the kept-place sentence.
    fn return_url(&self) -> &str {
        match self.ctx.return_url {
            Some(url) if !self.live.kept.is_empty() => url,
            _ => "",
        }
    }

    fn lang_switch(&self) -> String {
        let mut out = format!(
            "<nav class=\"lang\" aria-label=\"{}\">",
            Html(self.texts.switch_label)
        );
        for lang in Lang::ALL {
            let current = if lang == self.ctx.lang {
                " aria-current=\"true\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<a href=\"{}{}\" hreflang=\"{code}\" lang=\"{code}\"{current}>{}</a>",
                Html(self.ctx.lang_switch_url),
                lang.code(),
                lang.own_name(),
                code = lang.code(),
            );
        }
        out.push_str("</nav>");
        out
    }

    /// `{{script}}`: the updater with its configuration: what to poll, the
    /// state this page shows, and the strings it needs in this language.
    fn script(&self) -> String {
        let t = self.texts;
        let e = &t.eta_phrases;
        let mut out = String::with_capacity(UPDATER.len() + 1024);
        out.push_str("<script>(function(A){\n");
        out.push_str(UPDATER);
        out.push_str("})({\"url\":");
        push_js_string(&mut out, self.ctx.status_url);
        out.push_str(",\"state\":");
        push_js_string(&mut out, self.ctx.kind.shown_state());
        let _ = write!(
            out,
            ",\"refresh\":{},\"off\":{},\"zone\":",
            self.refresh_seconds, self.ctx.utc_offset_minutes
        );
        push_js_string(&mut out, &zone_name(self.ctx.utc_offset_minutes));
        out.push_str(",\"sep\":");
        push_js_string(
            &mut out,
            self.ctx.lang.digit_separator().encode_utf8(&mut [0; 4]),
        );
        out.push_str(",\"t\":{\"eta\":");
        push_js_object(
            &mut out,
            &[
                ("under_minute", e.under_minute),
                ("up_to_minutes", e.up_to_minutes),
                ("about_minutes", e.about_minutes),
                ("range_minutes", e.range_minutes),
                ("up_to_hours", e.up_to_hours),
                ("about_hours", e.about_hours),
                ("range_hours", e.range_hours),
                ("over_day", e.over_day),
            ],
        );
        out.push(',');
        push_js_entries(
            &mut out,
            &[
                ("eta_none", t.eta_none),
                ("beyond_quota", t.beyond_quota),
                ("requeued", t.requeued),
                ("offline", t.offline),
                ("countdown_days", t.countdown_days),
            ],
        );
        let opens_in = self
            .ctx
            .status
            .opens_at
            .filter(|_| !self.live.countdown.is_empty())
            .map(|at| at.saturating_sub(self.ctx.status.updated_at));
        match opens_in {
            Some(seconds) => {
                let _ = write!(out, "}},\"opens_in\":{seconds},\"v\":");
            }
            None => out.push_str("},\"v\":"),
        }
        push_js_object(&mut out, &self.live.entries());
        out.push_str("});</script>");
        out
    }

    /// The value of a placeholder: plain text, or HTML for the placeholders
    /// whose `is_html` is true.
    fn placeholder(&self, p: Placeholder) -> Cow<'_, str> {
        match p {
            Placeholder::Lang => self.ctx.lang.code().into(),
            Placeholder::Title => self.ctx.title.into(),
            Placeholder::State => self.state().into(),
            Placeholder::Headline => self.copy.headline.into(),
            Placeholder::Message => self.message().into(),
            Placeholder::Number => self.live.number.as_str().into(),
            Placeholder::Opens => self.live.opens.as_str().into(),
            Placeholder::Countdown => self.live.countdown.as_str().into(),
            Placeholder::Kept => self.live.kept.as_str().into(),
            Placeholder::Draw => self.live.draw.as_str().into(),
            Placeholder::ReturnLink => self.return_url().into(),
            Placeholder::Position => self.live.position.as_str().into(),
            Placeholder::Ahead => self.live.ahead.as_str().into(),
            Placeholder::Eta => self.live.eta.as_str().into(),
            Placeholder::QuotaLeft => self.live.quota_left.as_str().into(),
            Placeholder::BeyondQuota => self.live.beyond_quota.into(),
            Placeholder::Requeued => self.live.requeued.into(),
            Placeholder::Updated => self.live.updated.as_str().into(),
            Placeholder::RefreshSeconds => self.refresh_seconds.to_string().into(),
            Placeholder::StatusUrl => self.ctx.status_url.into(),
            Placeholder::LangSwitch => self.lang_switch().into(),
            Placeholder::Head => self.head().into(),
            Placeholder::Script => self.script().into(),
        }
    }
}

// === render ===

/// Renders the page. `custom` replaces the built-in HTML when the operator
/// configured a template.
pub fn render(ctx: &PageContext, custom: Option<&Template>) -> String {
    let values = Values::new(ctx);
    match custom {
        Some(template) => template.render(&values),
        None => {
            let mut out = String::with_capacity(12 * 1024);
            // Writing to a String cannot fail.
            let _ = builtin(&mut out, &values);
            out
        }
    }
}

/// ` hidden` when a live value is empty, matching what the script does.
fn hidden_if_empty(value: &str) -> &'static str {
    if value.is_empty() {
        " hidden"
    } else {
        ""
    }
}

/// A line icon per kind (24-unit view box), inline so the page needs no
/// other request.
fn icon(kind: PageKind) -> &'static str {
    match kind {
        PageKind::Waiting => "<circle cx=\"12\" cy=\"12\" r=\"9\"/><path d=\"M12 7v5l3 2\"/>",
        PageKind::Paused => "<circle cx=\"12\" cy=\"12\" r=\"9\"/><path d=\"M10 9v6M14 9v6\"/>",
        PageKind::SoldOut => "<circle cx=\"12\" cy=\"12\" r=\"9\"/><path d=\"M12 11v5M12 8h.01\"/>",
        PageKind::Closed => "<rect x=\"3\" y=\"5\" width=\"18\" height=\"16\" rx=\"2\"/><path d=\"M3 10h18M8 3v4M16 3v4\"/>",
        PageKind::OriginTrouble => "<path d=\"M12 3 2 20h20zM12 10v4M12 17h.01\"/>",
    }
}

/// The built-in page.
fn builtin(out: &mut String, v: &Values) -> fmt::Result {
    let (ctx, t, copy, live) = (v.ctx, v.texts, v.copy, &v.live);
    let title = ctx.title.trim();
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{headline}{sep}{title}</title>\n\
         {head}\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <header class=\"bar\"><div class=\"wrap\"><span class=\"room\">{title}</span>{switch}</div></header>\n\
         <main class=\"wrap\">\n\
         <h1><svg width=\"36\" height=\"36\" viewBox=\"0 0 24 24\" fill=\"none\" stroke=\"currentColor\" \
         stroke-width=\"2\" stroke-linecap=\"round\" stroke-linejoin=\"round\" aria-hidden=\"true\">{icon}</svg>\
         {headline}</h1>\n\
         <p class=\"note off\" data-antre-offline role=\"status\" aria-live=\"polite\" hidden></p>\n",
        lang = ctx.lang.code(),
        headline = Html(copy.headline),
        sep = if title.is_empty() { "" } else { " – " },
        title = Html(title),
        head = v.head(),
        switch = v.lang_switch(),
        icon = icon(ctx.kind),
    )?;
    // On the waiting page the numbers come first: they are what a visitor
    // came back to see. Elsewhere the lead is the news ("paused", "sold out").
    let lead = format!("<p class=\"lead\">{}</p>\n", Html(copy.lead));
    if ctx.kind != PageKind::Waiting {
        out.push_str(&lead);
    }
    if matches!(ctx.kind, PageKind::Closed | PageKind::SoldOut) {
        write!(
            out,
            "<section class=\"card\" data-antre-if=\"opens\"{hidden}>\n\
             <p data-antre=\"opens\">{opens}</p>\n\
             <p class=\"hero\"><span class=\"k\">{countdown_label}</span>\
             <span class=\"n\" data-antre=\"countdown\" role=\"timer\">{countdown}</span></p>\n</section>\n",
            hidden = hidden_if_empty(&live.opens),
            opens = Html(&live.opens),
            countdown_label = Html(t.countdown),
            countdown = Html(&live.countdown),
        )?;
    }
    if !live.draw.is_empty() {
        write!(
            out,
            "<section class=\"card\" data-antre-draw>\n<p>{draw}</p>\n</section>\n",
            draw = Html(&live.draw)
        )?;
    }
    if !live.kept.is_empty() {
        write!(
            out,
            "<section class=\"card\">\n<p>{kept}</p>\n",
            kept = Html(&live.kept)
        )?;
        if let Some(url) = ctx.return_url {
            writeln!(
                out,
                "<p class=\"note\">{keep_link} <a href=\"{url}\">{label}</a></p>",
                keep_link = Html(t.keep_link),
                url = Html(url),
                label = Html(t.return_link),
            )?;
        }
        out.push_str("</section>\n");
    }
    if ctx.kind.shows_place() {
        write!(
            out,
            "<section class=\"card\" aria-live=\"polite\" data-antre-if=\"position\"{card_hidden}>\n\
             <p class=\"note\" data-antre=\"requeued\" data-antre-if=\"requeued\"{requeued_hidden}>{requeued}</p>\n\
             <p class=\"hero\"><span class=\"k\">{position_label}</span>\
             <span class=\"n\" data-antre=\"position\">{position}</span></p>\n\
             <dl class=\"facts\">\n",
            card_hidden = hidden_if_empty(&live.position),
            requeued_hidden = hidden_if_empty(live.requeued),
            requeued = Html(live.requeued),
            position_label = Html(t.position),
            position = Html(&live.position),
        )?;
        for (key, label, value) in [
            ("number", t.number, &live.number),
            ("ahead", t.ahead, &live.ahead),
            ("eta", t.eta, &live.eta),
            ("quota_left", t.quota_left, &live.quota_left),
        ] {
            writeln!(
                out,
                "<div data-antre-if=\"{key}\"{hidden}><dt>{label}</dt><dd data-antre=\"{key}\">{value}</dd></div>",
                hidden = hidden_if_empty(value),
                label = Html(label),
                value = Html(value),
            )?;
        }
        write!(
            out,
            "</dl>\n<p class=\"note warn\" data-antre=\"beyond_quota\" data-antre-if=\"beyond_quota\"{hidden}>{text}</p>\n</section>\n",
            hidden = hidden_if_empty(live.beyond_quota),
            text = Html(live.beyond_quota),
        )?;
    }
    if ctx.kind == PageKind::Waiting {
        out.push_str(&lead);
    }
    out.push_str("<ul class=\"calm\">\n");
    for note in copy.notes {
        writeln!(out, "<li>{}</li>", Html(note))?;
    }
    write!(
        out,
        "</ul>\n<p class=\"upd\"><span class=\"dot\" aria-hidden=\"true\"></span>{updated_label} \
         <span data-antre=\"updated\">{updated}</span></p>\n</main>\n\
         <footer class=\"wrap\">{footer}</footer>\n{script}\n</body>\n</html>\n",
        updated_label = Html(t.updated),
        updated = Html(&live.updated),
        footer = Html(t.footer),
        script = v.script(),
    )
}

// === impl Template ===

/// An operator's own HTML page with placeholders, parsed once at config load
/// so that a typo fails `antre check` instead of showing visitors `{{eta}}`.
///
/// A placeholder is a name between double braces, e.g. `{{position}}`;
/// spaces inside the braces are allowed (`{{ position }}`), names are
/// lower case. Every `{{` opens a placeholder, so a template cannot contain a
/// literal `{{`; a lone `}}` is plain text. Unknown names and an unclosed
/// `{{` are errors that name the line.
///
/// Values are HTML-escaped, except `{{lang_switch}}`, `{{head}}` and
/// `{{script}}`, which are HTML. A value that does not apply to the page is
/// empty.
///
/// | placeholder | value |
/// |---|---|
/// | `{{lang}}` | page language code: `id` or `en`; use it in `<html lang="{{lang}}">` |
/// | `{{title}}` | the room's title from the config |
/// | `{{state}}` | `waiting`, `paused`, `sold_out`, `closed` (outside the room's schedule), or `admitted`; `origin_trouble` on the page shown to admitted visitors when the site behind fails |
/// | `{{headline}}` | the built-in headline for the page, in the page language |
/// | `{{message}}` | the built-in explanation for the page and its reassurances ("keep this tab open…"), as one paragraph in the page language |
/// | `{{number}}` | the visitor's ticket number, as the organiser would call it out, grouped like `{{position}}`; empty without a ticket |
/// | `{{opens}}` | on the closed and sold-out pages, a sentence saying when the room opens next ("The next opening is on 12 July 2021, 08:00 WIB."); empty when no opening is scheduled |
/// | `{{countdown}}` | the time left until that opening, `01:59:30` (`2d 03:04:05` from a day on); the script counts it down every second and reloads the page when it reaches zero |
/// | `{{kept}}` | for a visitor holding a return ticket, a sentence saying their number is kept for the next session, when it opens, and that they need not queue again; empty otherwise |
/// | `{{return_link}}` | with `{{kept}}`, the link that brings the return ticket to another browser (`/_antre/return?room=...`); empty otherwise |
/// | `{{draw}}` | for a visitor in the draw at the next opening, a sentence saying so, that coming earlier gives no advantage, their entry and the draw's commitment; empty otherwise |
/// | `{{position}}` | place in line (`1` = next), digits grouped for the language (`1.234` / `1,234`); empty when unknown and on the origin-trouble page |
/// | `{{ahead}}` | people ahead in line; like `{{position}}` |
/// | `{{eta}}` | the estimated wait as a range ("3–5 menit"), or a "cannot be estimated right now" sentence when there is no estimate; empty except on the waiting page |
/// | `{{quota_left}}` | places left for people in the line (admissions the quota still allows, less turns called and not yet taken), grouped like `{{position}}`; empty when the room has no quota and on the origin-trouble page |
/// | `{{beyond_quota}}` | a sentence saying more people are ahead than places left; empty otherwise |
/// | `{{requeued}}` | a sentence saying the visitor's earlier turn lapsed and they have a new place; empty otherwise |
/// | `{{updated}}` | when the numbers were computed, in the configured time zone, e.g. `14:03:27 WIB` (`WITA`, `WIT`, else `UTC+05:30`) |
/// | `{{refresh_seconds}}` | seconds between refreshes (at least 1) |
/// | `{{status_url}}` | the URL the script polls |
/// | `{{lang_switch}}` | the built-in language switch: a `<nav class="lang">` with one link per language, the current one with `aria-current="true"` |
/// | `{{head}}` | put inside `<head>`: the `<noscript>` meta refresh for visitors without JavaScript, and a `[hidden]` rule the script relies on |
/// | `{{script}}` | put at the end of `<body>`: the updater script |
///
/// Without `{{head}}` and `{{script}}` the page never refreshes and visitors
/// are not let in when their turn comes; include both.
///
/// `{{script}}` polls `{{status_url}}` every `{{refresh_seconds}}` seconds
/// and reloads the page when the visitor's state changes or their ticket is
/// gone (on the origin-trouble page, as soon as antre answers, to retry the
/// site). On network errors it shows a "connection lost" note and retries
/// with backoff. After each poll, and once at load, it updates every element
/// marked with:
///
/// - `data-antre="KEY"`: its text becomes the current value of KEY, one of
///   `number`, `position`, `ahead`, `eta`, `quota_left`, `updated`,
///   `beyond_quota`, `requeued`, `opens`, `countdown` (the same text as
///   the placeholder of that name);
/// - `data-antre-if="KEY"`: hidden while the value of KEY is empty (a row
///   such as "places left: …" that should vanish when there is no quota).
///   Without JavaScript such an element stays as written;
/// - `data-antre-offline`: where to show "connection lost, retrying" (without
///   one the script pins its own note to the bottom of the screen). Give it
///   `hidden` so it starts invisible.
///
/// Put the elements whose text changes inside an `aria-live="polite"`
/// element so screen readers announce the new numbers. For example:
///
/// ```html
/// <p data-antre-if="quota_left">Sisa kuota: <b data-antre="quota_left">{{quota_left}}</b></p>
/// <div aria-live="polite">Posisi: <b data-antre="position">{{position}}</b></div>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Slot(Placeholder),
}

/// The names a template may use; see [`Template`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Lang,
    Title,
    State,
    Headline,
    Message,
    Number,
    Opens,
    Countdown,
    Kept,
    ReturnLink,
    Draw,
    Position,
    Ahead,
    Eta,
    QuotaLeft,
    BeyondQuota,
    Requeued,
    Updated,
    RefreshSeconds,
    StatusUrl,
    LangSwitch,
    Head,
    Script,
}

impl Placeholder {
    const ALL: [Placeholder; 23] = [
        Placeholder::Lang,
        Placeholder::Title,
        Placeholder::State,
        Placeholder::Headline,
        Placeholder::Message,
        Placeholder::Number,
        Placeholder::Opens,
        Placeholder::Countdown,
        Placeholder::Kept,
        Placeholder::ReturnLink,
        Placeholder::Draw,
        Placeholder::Position,
        Placeholder::Ahead,
        Placeholder::Eta,
        Placeholder::QuotaLeft,
        Placeholder::BeyondQuota,
        Placeholder::Requeued,
        Placeholder::Updated,
        Placeholder::RefreshSeconds,
        Placeholder::StatusUrl,
        Placeholder::LangSwitch,
        Placeholder::Head,
        Placeholder::Script,
    ];

    fn name(self) -> &'static str {
        match self {
            Placeholder::Lang => "lang",
            Placeholder::Title => "title",
            Placeholder::State => "state",
            Placeholder::Headline => "headline",
            Placeholder::Message => "message",
            Placeholder::Number => "number",
            Placeholder::Opens => "opens",
            Placeholder::Countdown => "countdown",
            Placeholder::Kept => "kept",
            Placeholder::ReturnLink => "return_link",
            Placeholder::Draw => "draw",
            Placeholder::Position => "position",
            Placeholder::Ahead => "ahead",
            Placeholder::Eta => "eta",
            Placeholder::QuotaLeft => "quota_left",
            Placeholder::BeyondQuota => "beyond_quota",
            Placeholder::Requeued => "requeued",
            Placeholder::Updated => "updated",
            Placeholder::RefreshSeconds => "refresh_seconds",
            Placeholder::StatusUrl => "status_url",
            Placeholder::LangSwitch => "lang_switch",
            Placeholder::Head => "head",
            Placeholder::Script => "script",
        }
    }

    fn from_name(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the value is HTML built by antre, inserted as is.
    fn is_html(self) -> bool {
        matches!(
            self,
            Placeholder::LangSwitch | Placeholder::Head | Placeholder::Script
        )
    }
}

impl Template {
    /// Parses a template. Errors name every unknown placeholder with its line
    /// (e.g. "unknown placeholder {{postion}} at line 3 (did you mean
    /// {{position}}?)"), and an unclosed `{{`.
    pub fn parse(source: &str) -> Result<Template, Vec<String>> {
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        let mut rest = source;
        let mut line = 1;
        while let Some(open) = rest.find("{{") {
            let text = &rest[..open];
            line += text.matches('\n').count();
            if !text.is_empty() {
                parts.push(Part::Text(text.to_owned()));
            }
            let inside = &rest[open + 2..];
            let Some(close) = inside.find("}}") else {
                errors.push(format!(
                    "unclosed {{{{ at line {line}: a placeholder looks like {{{{position}}}}"
                ));
                rest = "";
                break;
            };
            let raw = &inside[..close];
            let name = raw.trim();
            match Placeholder::from_name(name) {
                Some(p) => parts.push(Part::Slot(p)),
                None => errors.push(unknown_placeholder(name, line)),
            }
            line += raw.matches('\n').count();
            rest = &inside[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if errors.is_empty() {
            Ok(Template { parts })
        } else {
            Err(errors)
        }
    }

    fn render(&self, values: &Values) -> String {
        let mut out = String::with_capacity(
            self.parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.len(),
                    Part::Slot(_) => 64,
                })
                .sum(),
        );
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Slot(p) if p.is_html() => out.push_str(&values.placeholder(*p)),
                Part::Slot(p) => {
                    let _ = write!(out, "{}", Html(&values.placeholder(*p)));
                }
            }
        }
        out
    }
}

/// The error for an unknown name, with a suggestion when it is a near miss.
fn unknown_placeholder(name: &str, line: usize) -> String {
    // Keep the message readable when a stray `{{` swallowed half the page.
    let mut shown: String = name.chars().take(40).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    let mut message = format!("unknown placeholder {{{{{shown}}}}} at line {line}");
    let lower = name.to_ascii_lowercase();
    let nearest = Placeholder::ALL
        .into_iter()
        .map(|p| (edit_distance(&lower, p.name()), p.name()))
        .min_by_key(|(d, _)| *d);
    if let Some((distance, known)) = nearest {
        if distance <= 2 {
            let _ = write!(message, " (did you mean {{{{{known}}}}}?)");
        }
    }
    message
}

/// Levenshtein distance, for typo suggestions on short names (template
/// placeholders here, config keys in `config`).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [PageKind; 5] = [
        PageKind::Waiting,
        PageKind::SoldOut,
        PageKind::Paused,
        PageKind::Closed,
        PageKind::OriginTrouble,
    ];

    fn status(state: State) -> Status {
        Status {
            room: "vaksin".into(),
            state,
            ticket: Some(2_345),
            position: Some(1_234),
            ahead: Some(1_233),
            eta_seconds: Some(400),
            eta_range_seconds: Some([180, 300]),
            quota_left: Some(1_376),
            beyond_quota: false,
            opens_at: None,
            kept_for: None,
            return_ticket: None,
            draw: None,
            requeued: false,
            notice: None,
            refresh_seconds: 7,
            poll_after_millis: None,
            updated_at: 1_700_000_000,
        }
    }

    fn state_for(kind: PageKind) -> State {
        match kind {
            PageKind::Waiting => State::Waiting,
            PageKind::SoldOut => State::SoldOut,
            PageKind::Paused => State::Paused,
            PageKind::Closed => State::Closed,
            PageKind::OriginTrouble => State::Admitted,
        }
    }

    fn ctx<'a>(kind: PageKind, lang: Lang, status: &'a Status, title: &'a str) -> PageContext<'a> {
        PageContext {
            kind,
            lang,
            status,
            title,
            status_url: "/_antre/status?room=vaksin",
            lang_switch_url: "/_antre/lang?back=%2Fdaftar&set=",
            utc_offset_minutes: 420,
            return_url: None,
        }
    }

    #[test]
    fn every_page_is_small_self_contained_and_accessible() {
        for kind in KINDS {
            for lang in Lang::ALL {
                // The worst case: every optional note shown, a long title.
                let mut s = status(state_for(kind));
                s.beyond_quota = true;
                s.requeued = true;
                s.position = Some(u64::MAX);
                let title =
                    "Pendaftaran Vaksinasi COVID-19 Dosis Kedua untuk Warga Kota Balikpapan";
                let html = render(&ctx(kind, lang, &s, title), None);
                let what = format!("{kind:?}/{lang:?}");
                assert!(html.len() < 20 * 1024, "{what} is {} bytes", html.len());
                assert!(html.starts_with("<!DOCTYPE html>"), "{what}");
                for outside in [
                    "http://",
                    "https://",
                    "src=",
                    "url(",
                    "<link",
                    "@import",
                    "@font-face",
                ] {
                    assert!(!html.contains(outside), "{what} contains {outside}");
                }
                assert!(
                    html.contains(&format!("<html lang=\"{}\">", lang.code())),
                    "{what}"
                );
                assert!(
                    html.contains(
                        "<noscript><meta http-equiv=\"refresh\" content=\"7\"></noscript>"
                    ),
                    "{what}"
                );
                assert!(html.contains("aria-live=\"polite\""), "{what}");
                assert!(html.contains("<script>"), "{what}");
                assert!(
                    html.contains("\"url\":\"/_antre/status?room=vaksin\""),
                    "{what}"
                );
                assert!(html.contains("aria-current=\"true\">"), "{what}");
            }
        }
    }

    #[test]
    fn refresh_of_zero_does_not_reload_in_a_loop() {
        let mut s = status(State::Waiting);
        s.refresh_seconds = 0;
        let html = render(&ctx(PageKind::Waiting, Lang::Id, &s, "x"), None);
        assert!(html.contains("content=\"1\""));
    }

    #[test]
    fn pages_speak_only_their_language() {
        let indonesian = [
            "Posisi Anda dalam antrean",
            "Orang di depan Anda",
            "3–5 menit",
            "Diperbarui pukul",
        ];
        let english = [
            "Your place in line",
            "People ahead of you",
            "3–5 minutes",
            "Updated at",
        ];
        let s = status(State::Waiting);
        let id = render(&ctx(PageKind::Waiting, Lang::Id, &s, "x"), None);
        let en = render(&ctx(PageKind::Waiting, Lang::En, &s, "x"), None);
        for (want, other) in indonesian.iter().zip(english) {
            assert!(id.contains(want), "id page lacks {want}");
            assert!(!id.contains(other), "id page has {other}");
            assert!(en.contains(other), "en page lacks {other}");
            assert!(!en.contains(want), "en page has {want}");
        }
        // The script's strings follow the page language too.
        assert!(id.contains("Koneksi terputus") && !id.contains("Connection lost"));
        assert!(en.contains("Connection lost") && !en.contains("Koneksi terputus"));
        assert!(id.contains("\"sep\":\".\"") && en.contains("\"sep\":\",\""));

        for kind in [PageKind::SoldOut, PageKind::Paused, PageKind::OriginTrouble] {
            let s = status(state_for(kind));
            let id = render(&ctx(kind, Lang::Id, &s, "x"), None);
            let en = render(&ctx(kind, Lang::En, &s, "x"), None);
            assert!(id.contains(ID.copy(kind).headline) && !id.contains(EN.copy(kind).headline));
            assert!(en.contains(EN.copy(kind).headline) && !en.contains(ID.copy(kind).headline));
        }
    }

    #[test]
    fn waiting_page_shows_the_numbers() {
        let s = status(State::Waiting);
        let id = render(&ctx(PageKind::Waiting, Lang::Id, &s, "x"), None);
        assert!(id.contains("data-antre=\"position\">1.234<"));
        assert!(id.contains("data-antre=\"ahead\">1.233<"));
        assert!(id.contains("data-antre=\"eta\">3–5 menit<"));
        assert!(id.contains("data-antre=\"quota_left\">1.376<"));
        assert!(id.contains("data-antre=\"updated\">05:13:20 WIB<"));
        assert!(id.contains("Memuat ulang halaman tidak akan menghilangkan posisi Anda"));
        assert!(id.contains("diarahkan masuk secara otomatis"));
        // Notes that do not apply are present for the script but hidden.
        assert!(id.contains("data-antre-if=\"beyond_quota\" hidden>"));
        assert!(id.contains("data-antre-if=\"requeued\" hidden>"));
        let en = render(&ctx(PageKind::Waiting, Lang::En, &s, "x"), None);
        assert!(en.contains("data-antre=\"position\">1,234<"));
        assert!(
            en.contains("refreshing the page will not lose your place")
                || en.contains("Refreshing the page will not lose your place")
        );
    }

    #[test]
    fn waiting_page_is_honest_about_what_it_does_not_know() {
        let mut s = status(State::Waiting);
        s.eta_range_seconds = None;
        s.quota_left = None;
        s.beyond_quota = true;
        s.requeued = true;
        let id = render(&ctx(PageKind::Waiting, Lang::Id, &s, "x"), None);
        assert!(id.contains("data-antre=\"eta\">Belum dapat diperkirakan saat ini<"));
        assert!(id.contains("<div data-antre-if=\"quota_left\" hidden>"));
        assert!(id.contains(&format!(
            "data-antre-if=\"beyond_quota\">{}",
            Html(ID.beyond_quota)
        )));
        assert!(id.contains(&format!("data-antre-if=\"requeued\">{}", Html(ID.requeued))));
        let en = render(&ctx(PageKind::Waiting, Lang::En, &s, "x"), None);
        assert!(en.contains("Cannot be estimated right now"));
        assert!(en.contains("more people ahead of you than places left"));
        assert!(en.contains("Your earlier turn came and went while you were away"));
    }

    #[test]
    fn sibling_pages_say_the_right_thing() {
        let s = status(State::SoldOut);
        let html = render(&ctx(PageKind::SoldOut, Lang::En, &s, "x"), None);
        assert!(html.contains("No one else can be let in for the time being"));
        assert!(html.contains("\"state\":\"sold_out\""));
        assert!(!html.contains("data-antre=\"position\""));

        let s = status(State::Paused);
        let html = render(&ctx(PageKind::Paused, Lang::Id, &s, "x"), None);
        assert!(html.contains("Posisi Anda tetap tersimpan"));
        assert!(html.contains("data-antre=\"position\">1.234<"));
        // No wait is promised while nothing moves.
        assert!(html.contains("<div data-antre-if=\"eta\" hidden>"));
        assert!(html.contains("\"state\":\"paused\""));

        let s = status(State::Admitted);
        let html = render(&ctx(PageKind::OriginTrouble, Lang::Id, &s, "x"), None);
        assert!(html.contains("Akses Anda tetap tersimpan"));
        assert!(html.contains("\"state\":\"origin_trouble\""));
        assert!(
            !html.contains("1.234"),
            "admitted visitors have no place in line"
        );
    }

    #[test]
    fn dynamic_values_are_escaped() {
        let s = status(State::Waiting);
        let evil = "<script>alert(1)</script>";
        let mut c = ctx(PageKind::Waiting, Lang::Id, &s, evil);
        c.status_url = "/s?a=\"</script><script>alert(2)</script>";
        c.lang_switch_url = "/l?x=\"><script>alert(3)</script>&set=";
        let html = render(&c, None);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("alert(1)</script>"));
        assert!(!html.contains("<script>alert(2)"));
        assert!(html.contains("\\u003c/script\\u003e\\u003cscript\\u003ealert(2)"));
        assert!(html
            .contains("href=\"/l?x=&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;&amp;set=en\""));
        assert_eq!(html.matches("<script>").count(), 1);
    }

    #[test]
    fn language_switch_links_and_marks_the_current_language() {
        let s = status(State::Waiting);
        let en = render(&ctx(PageKind::Waiting, Lang::En, &s, "x"), None);
        assert!(en.contains(
            "<a href=\"/_antre/lang?back=%2Fdaftar&amp;set=id\" hreflang=\"id\" lang=\"id\">Bahasa Indonesia</a>"
        ));
        assert!(en.contains(
            "<a href=\"/_antre/lang?back=%2Fdaftar&amp;set=en\" hreflang=\"en\" lang=\"en\" aria-current=\"true\">English</a>"
        ));
    }

    #[test]
    fn lang_codes() {
        for (code, lang) in [
            ("id", Some(Lang::Id)),
            ("ID", Some(Lang::Id)),
            ("in", Some(Lang::Id)),
            ("id-ID", Some(Lang::Id)),
            ("in_ID", Some(Lang::Id)),
            ("en", Some(Lang::En)),
            ("En-us", Some(Lang::En)),
            (" en-GB ", Some(Lang::En)),
            ("jv", None),
            ("", None),
            ("english", None),
            ("*", None),
        ] {
            assert_eq!(Lang::from_code(code), lang, "{code:?}");
        }
        for lang in Lang::ALL {
            assert_eq!(Lang::from_code(lang.code()), Some(lang));
        }
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("en-US,en;q=0.9"), None), Lang::En);
        assert_eq!(negotiate(Some("id-ID,id;q=0.9,en;q=0.8"), None), Lang::Id);
        assert_eq!(negotiate(Some("en;q=0.1, id;q=0.9"), None), Lang::Id);
        assert_eq!(negotiate(Some("fr-FR,fr;q=0.9,en;q=0.5"), None), Lang::En);
        assert_eq!(negotiate(Some("en;q=0, id;q=0.2"), None), Lang::Id);
        assert_eq!(negotiate(Some("en;q=0"), None), Lang::Id);
        assert_eq!(negotiate(Some("en;q=banana, id;q=0.5"), None), Lang::Id);
        assert_eq!(negotiate(Some("en;q=2"), None), Lang::Id);
        assert_eq!(negotiate(Some("en;Q=0.7;level=1"), None), Lang::En);
        assert_eq!(
            negotiate(Some("en, id"), None),
            Lang::En,
            "ties go to the first"
        );
        for garbage in ["", ";;;,,,", "\u{0}\u{ff}é", "q=1", "*", "zz-ZZ;q=1.0"] {
            assert_eq!(negotiate(Some(garbage), None), Lang::Id, "{garbage:?}");
        }
        assert_eq!(negotiate(None, None), Lang::Id);
        // The visitor's own choice wins, when it is one we speak.
        assert_eq!(negotiate(Some("id"), Some("en")), Lang::En);
        assert_eq!(negotiate(Some("en"), Some("id")), Lang::Id);
        assert_eq!(negotiate(Some("en"), Some("klingon")), Lang::En);
    }

    #[test]
    fn eta_ranges_read_naturally() {
        for (range, id, en) in [
            ([0, 0], "kurang dari 1 menit", "less than a minute"),
            ([10, 45], "kurang dari 1 menit", "less than a minute"),
            ([30, 60], "kurang dari 1 menit", "less than a minute"),
            ([30, 150], "hingga 3 menit", "up to 3 minutes"),
            ([180, 300], "3–5 menit", "3–5 minutes"),
            ([300, 180], "3–5 menit", "3–5 minutes"),
            ([190, 290], "3–5 menit", "3–5 minutes"),
            ([600, 600], "sekitar 10 menit", "about 10 minutes"),
            ([1500, 2400], "25–40 menit", "25–40 minutes"),
            ([1320, 1900], "20–35 menit", "20–35 minutes"),
            ([200, 1500], "3–25 menit", "3–25 minutes"),
            ([3600, 5400], "60–90 menit", "60–90 minutes"),
            ([7200, 10800], "sekitar 2–3 jam", "about 2–3 hours"),
            ([6000, 9000], "sekitar 2–3 jam", "about 2–3 hours"),
            ([7200, 7200], "sekitar 2 jam", "about 2 hours"),
            ([600, 7000], "hingga 2 jam", "up to 2 hours"),
            ([90_000, 200_000], "lebih dari 1 hari", "more than a day"),
            ([u64::MAX, u64::MAX], "lebih dari 1 hari", "more than a day"),
            (
                [0, u64::MAX],
                "hingga 5124095576030432 jam",
                "up to 5124095576030432 hours",
            ),
        ] {
            assert_eq!(format_eta(Lang::Id, range), id, "{range:?}");
            assert_eq!(format_eta(Lang::En, range), en, "{range:?}");
        }
    }

    #[test]
    fn updated_time_names_the_zone() {
        // 1_700_000_000 is 2023-11-14 22:13:20 UTC.
        let t = 1_700_000_000;
        assert_eq!(format_updated(t, 420), "05:13:20 WIB");
        assert_eq!(format_updated(t, 480), "06:13:20 WITA");
        assert_eq!(format_updated(t, 540), "07:13:20 WIT");
        assert_eq!(format_updated(t, 0), "22:13:20 UTC");
        assert_eq!(format_updated(t, 330), "03:43:20 UTC+05:30");
        assert_eq!(format_updated(t, -180), "19:13:20 UTC-03:00");
        assert_eq!(format_updated(0, -60), "23:00:00 UTC-01:00");
        assert_eq!(
            format_updated(u64::MAX, i32::MIN).len(),
            "00:00:00 UTC-35791394:08".len()
        );
        assert_eq!(zone_name(i32::MIN), "UTC-35791394:08");
    }

    #[test]
    fn digits_are_grouped_per_language() {
        assert_eq!(group_digits(0, Lang::Id), "0");
        assert_eq!(group_digits(999, Lang::Id), "999");
        assert_eq!(group_digits(1_000, Lang::Id), "1.000");
        assert_eq!(group_digits(1_234_567, Lang::En), "1,234,567");
        assert_eq!(
            group_digits(u64::MAX, Lang::En),
            "18,446,744,073,709,551,615"
        );
    }

    #[test]
    fn template_parses_every_placeholder() {
        let source: String = Placeholder::ALL
            .iter()
            .map(|p| format!("[{{{{{}}}}}]", p.name()))
            .collect();
        let template = Template::parse(&source).expect("all known");
        let slots = template
            .parts
            .iter()
            .filter(|p| matches!(p, Part::Slot(_)))
            .count();
        assert_eq!(slots, Placeholder::ALL.len());
        assert!(Template::parse("{{ position }} and }} alone").is_ok());
        assert!(Template::parse("no placeholders").is_ok());
        assert!(Template::parse("").is_ok());
    }

    #[test]
    fn template_names_every_unknown_placeholder() {
        let errors = Template::parse("<p>\n<b>{{position}}</b>\n{{postion}} {{ETA}}\n{{nope}}{{}}")
            .unwrap_err();
        assert_eq!(
            errors,
            vec![
                "unknown placeholder {{postion}} at line 3 (did you mean {{position}}?)".to_owned(),
                "unknown placeholder {{ETA}} at line 3 (did you mean {{eta}}?)".to_owned(),
                "unknown placeholder {{nope}} at line 4".to_owned(),
                "unknown placeholder {{}} at line 4".to_owned(),
            ]
        );
    }

    #[test]
    fn template_rejects_an_unclosed_placeholder() {
        let errors = Template::parse("<p>{{title}}</p>\n{{postion}}\n<p>{{eta</p>\n").unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("{{postion}} at line 2"));
        assert!(
            errors[1].starts_with("unclosed {{ at line 3"),
            "{}",
            errors[1]
        );
        assert!(Template::parse("{{").is_err());
        assert!(Template::parse("{{eta}").is_err());
        // A stray `{{` that swallows the page gives a short message.
        let long = format!("{{{{ {} }}}}", "x".repeat(5_000));
        let errors = Template::parse(&long).unwrap_err();
        assert!(errors[0].len() < 100, "{}", errors[0]);
    }

    #[test]
    fn template_renders_escaped_values() {
        let template = Template::parse(
            "<html lang=\"{{lang}}\"><head>{{head}}<title>{{title}}</title></head>\
             <body data-state=\"{{state}}\">{{lang_switch}}<h1>{{headline}}</h1><p>{{message}}</p>\
             <b data-antre=\"position\">{{position}}</b>|{{ahead}}|{{eta}}|{{quota_left}}|{{updated}}|\
             {{refresh_seconds}}|{{status_url}}|[{{beyond_quota}}]|[{{requeued}}]{{script}}</body></html>",
        )
        .expect("valid");
        let s = status(State::Waiting);
        let mut c = ctx(PageKind::Waiting, Lang::Id, &s, "<b>Vaksin & \"Kota\"</b>");
        c.status_url = "/_antre/status?room=a&b=<c>";
        let html = render(&c, Some(&template));
        assert!(html.starts_with(
            "<html lang=\"id\"><head><noscript><meta http-equiv=\"refresh\" content=\"7\">"
        ));
        assert!(html.contains("<title>&lt;b&gt;Vaksin &amp; &quot;Kota&quot;&lt;/b&gt;</title>"));
        assert!(html.contains("data-state=\"waiting\""));
        assert!(html.contains("<nav class=\"lang\""));
        assert!(html.contains("<h1>Anda sedang dalam antrean</h1>"));
        assert!(html.contains("Agar adil") && html.contains("diarahkan masuk secara otomatis"));
        assert!(html.contains(
            "<b data-antre=\"position\">1.234</b>|1.233|3–5 menit|1.376|05:13:20 WIB|7|/_antre/status?room=a&amp;b=&lt;c&gt;|[]|[]<script>"
        ));
        assert!(html.ends_with("</script></body></html>"));

        // Values that do not apply are empty; origin trouble has no numbers.
        let s = status(State::Admitted);
        let c = ctx(PageKind::OriginTrouble, Lang::En, &s, "x");
        let html = render(&c, Some(&template));
        assert!(html.contains("data-state=\"origin_trouble\""));
        assert!(html.contains("<b data-antre=\"position\"></b>||||05:13:20 WIB|"));
    }

    #[test]
    fn script_config_is_valid_json_with_the_page_strings() {
        let mut s = status(State::Waiting);
        s.beyond_quota = true;
        let mut c = ctx(PageKind::Waiting, Lang::Id, &s, "x");
        c.status_url = "/s?\"quoted\"\\\n\u{2028}";
        c.utc_offset_minutes = 480;
        let script = Values::new(&c).script();
        let json = script
            .rsplit_once("})(")
            .and_then(|(_, rest)| rest.strip_suffix(");</script>"))
            .expect("config at the end");
        let config: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
        assert_eq!(config["url"], "/s?\"quoted\"\\\n\u{2028}");
        assert_eq!(config["state"], "waiting");
        assert_eq!(config["refresh"], 7);
        assert_eq!(config["off"], 480);
        assert_eq!(config["zone"], "WITA");
        assert_eq!(config["t"]["eta"]["range_hours"], "sekitar {a}–{b} jam");
        assert_eq!(config["t"]["offline"], ID.offline);
        assert_eq!(config["v"]["position"], "1.234");
        assert_eq!(config["v"]["updated"], "06:13:20 WITA");
        assert_eq!(config["v"]["beyond_quota"], ID.beyond_quota);
        assert_eq!(config["v"]["requeued"], "");
    }

    #[test]
    fn script_keeps_its_contract_with_the_server() {
        // What the brief promises about polling, checked where it is written.
        for needle in [
            "Accept: \"application/json\"",
            "credentials: \"same-origin\"",
            "cache: \"no-store\"",
            "r.status == 404",
            "location.reload()",
            "s.state != shown",
            "Math.min(Math.max(60, wait)",
            "[data-antre-offline]",
        ] {
            assert!(UPDATER.contains(needle), "updater.js lacks {needle}");
        }
        // Each live key the script writes is one the page and templates know.
        let s = status(State::Waiting);
        let live = Live::new(&ctx(PageKind::Waiting, Lang::Id, &s, "x"));
        for (key, _) in live.entries() {
            // The opening's date is written once: a page whose opening
            // passes reloads.
            assert!(
                key == "opens"
                    || UPDATER.contains(&format!("    {key}: "))
                    || UPDATER.contains(&format!("set(\"{key}\"")),
                "updater.js does not set {key}"
            );
            assert!(
                Placeholder::from_name(key).is_some(),
                "{key} is no placeholder"
            );
        }
    }

    #[test]
    fn page_kind_for_state() {
        assert_eq!(PageKind::for_state(State::Admitted), None);
        assert_eq!(PageKind::for_state(State::Waiting), Some(PageKind::Waiting));
        assert_eq!(PageKind::for_state(State::SoldOut), Some(PageKind::SoldOut));
        assert_eq!(PageKind::for_state(State::Paused), Some(PageKind::Paused));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("postion", "position"), 1);
        assert_eq!(edit_distance("", "eta"), 3);
        assert_eq!(edit_distance("eta", "eta"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
