//! Rendering for people: the agents table, relative times, durations, money, prompt lines.
//! Pure functions of their inputs (the clock and terminal width are parameters), so every rule
//! is tested without a terminal.

use agentd_wire::{Item, Millis, Summary};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// "just now", "42s ago", "5m ago", "3h ago", "2d ago", then the date.
pub fn relative(t: Millis, now: Millis) -> String {
    let secs = (now.0 - t.0) / 1000;
    match secs {
        s if s < 5 => "just now".into(),
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s if s < 7 * 86_400 => format!("{}d ago", s / 86_400),
        _ => agentd_wire::format_rfc3339_ms(t.0)[..10].to_owned(),
    }
}

/// "850ms", "42s", "3m 12s", "1h 04m", "2d 03h".
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Credits when the platform charged them, else the estimated cost, else "-".
pub fn money(item: &Item) -> String {
    match (item.credits, item.cost_usd) {
        (Some(c), _) => format!("{} cr", trim_number(c)),
        (None, Some(usd)) => format!("${usd:.2}"),
        (None, None) => "-".into(),
    }
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The status icon, with a `?` when the status is a guess (a quiet-time rule) rather than
/// something the agent wrote or said.
pub fn status_icon(item: &Item) -> String {
    if item.status_source == Some(agentd_wire::StatusSource::Inferred) {
        format!("{}?", item.status.icon())
    } else {
        item.status.icon().to_owned()
    }
}

/// Where a status came from, for people.
pub fn status_source(s: agentd_wire::StatusSource) -> &'static str {
    use agentd_wire::StatusSource::*;
    match s {
        Hook => "hook (the agent said so as it happened)",
        Registry => "registry (the agent's live session file)",
        Transcript => "transcript (its last lines)",
        RunLog => "run log",
        CloudApi => "cloud API",
        Inferred => "inferred: quiet for a while, so probably this (a guess)",
    }
}

/// The id as shown in the table: the scheme and the first 8 characters after it. Any unique
/// prefix resolves, so this is enough to type back.
pub fn short_id(id: &str) -> String {
    match id.split_once(':') {
        Some((scheme, rest)) => format!("{scheme}:{}", rest.chars().take(8).collect::<String>()),
        None => id.chars().take(12).collect(),
    }
}

/// Replaces control characters (newlines, tabs, and the escape sequences a hostile run log
/// could use to rewrite the terminal) with spaces.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Cuts `s` to at most `width` terminal columns, ending with "…" when cut.
pub fn fit(s: &str, width: usize) -> String {
    let s = printable(s);
    if s.width() <= width {
        return s;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

fn pad(s: &str, width: usize) -> String {
    let w = s.width();
    if w >= width {
        s.to_owned()
    } else {
        format!("{s}{}", " ".repeat(width - w))
    }
}

/// The title column's index in the table.
const TITLE: usize = 2;
/// Narrowest the title may get before other columns are dropped.
const MIN_TITLE: usize = 16;

/// The agents table: status icon and word, source, title (cut to fit `width` columns when
/// given), creator, created (relative), duration, credits or cost, short id.
pub fn table(items: &[Item], now: Millis, width: Option<usize>) -> String {
    const HEADERS: [&str; 8] = [
        "STATUS", "SOURCE", "TITLE", "CREATOR", "CREATED", "DURATION", "COST", "ID",
    ];
    let rows: Vec<[String; 8]> = items
        .iter()
        .map(|i| {
            let mut title = i.title.clone().unwrap_or_default();
            if let (agentd_wire::Status::Blocked, Some(d)) = (i.status, &i.status_detail) {
                title = format!("{title} ({d})");
            }
            [
                format!("{} {}", status_icon(i), i.status),
                i.source.to_string(),
                printable(&title),
                printable(i.creator.as_deref().unwrap_or_default()),
                relative(i.created_at, now),
                i.duration_ms.map(duration).unwrap_or_else(|| "-".into()),
                money(i),
                short_id(&i.id),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.width()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.width());
        }
    }
    // Columns shown, in order; on a narrow terminal the least telling ones go first so that
    // the title keeps room.
    let mut shown: Vec<usize> = (0..HEADERS.len()).collect();
    if let Some(total) = width {
        let space = |shown: &[usize]| -> usize {
            let others: usize = shown
                .iter()
                .filter(|&&c| c != TITLE)
                .map(|&c| widths[c] + 2)
                .sum();
            total.saturating_sub(others)
        };
        for drop in [5, 3, 4, 1, 6] {
            if space(&shown) >= MIN_TITLE {
                break;
            }
            shown.retain(|&c| c != drop);
        }
        widths[TITLE] = widths[TITLE].min(space(&shown).max(MIN_TITLE));
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let last = shown.len() - 1;
        let text: Vec<String> = shown
            .iter()
            .enumerate()
            .map(|(pos, &c)| {
                let cell = if c == TITLE {
                    fit(&cells[c], widths[c])
                } else {
                    cells[c].clone()
                };
                if pos == last {
                    cell
                } else {
                    pad(&cell, widths[c])
                }
            })
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(&HEADERS.map(str::to_owned));
    for r in &rows {
        line(r);
    }
    out
}

/// Renders a prompt line. Empty when nothing is active. An empty `format` gives the default
/// (`⚙2 🟨1`, zero parts left out); otherwise the placeholders `{working}`, `{blocked}`,
/// `{active}`, `{failed_today}`, `{cost_today}` and `{credits_today}` are filled in.
pub fn prompt(s: &Summary, format: &str) -> String {
    if s.active == 0 {
        return String::new();
    }
    if format.is_empty() {
        let mut parts = Vec::new();
        if s.working > 0 {
            parts.push(format!("⚙{}", s.working));
        }
        if s.blocked > 0 {
            parts.push(format!("🟨{}", s.blocked));
        }
        return parts.join(" ");
    }
    format
        .replace("{working}", &s.working.to_string())
        .replace("{blocked}", &s.blocked.to_string())
        .replace("{active}", &s.active.to_string())
        .replace("{failed_today}", &s.today.failed.to_string())
        .replace("{cost_today}", &format!("${:.2}", s.today.cost_usd))
        .replace("{credits_today}", &trim_number(s.today.credits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentd_wire::Today;

    #[test]
    fn times_and_durations() {
        let now = Millis(1_800_000_000_000);
        let ago = |s: i64| relative(Millis(now.0 - s * 1000), now);
        assert_eq!(
            [ago(1), ago(42), ago(300), ago(3 * 3600), ago(2 * 86_400)],
            ["just now", "42s ago", "5m ago", "3h ago", "2d ago"]
        );
        assert_eq!(ago(30 * 86_400), "2026-12-16");
        assert_eq!(
            [
                duration(850),
                duration(42_000),
                duration(192_000),
                duration(3_840_000),
                duration(183_600_000)
            ],
            ["850ms", "42s", "3m 12s", "1h 04m", "2d 03h"]
        );
    }

    #[test]
    fn fitting_counts_columns_not_bytes() {
        assert_eq!(fit("short", 10), "short");
        assert_eq!(fit("a long title here", 8), "a long …");
        assert_eq!(fit("日本語のタイトル", 7), "日本語…");
        assert_eq!(fit("two\nlines", 20), "two lines");
        assert_eq!(
            printable("evil\u{1b}]0;pwned\u{7}title"),
            "evil ]0;pwned title"
        );
    }

    #[test]
    fn narrow_terminals_drop_columns_before_the_title() {
        let item: Item = serde_json::from_value(serde_json::json!({
            "id": "cli:0123456789abcdef", "kind": "run", "source": "scheduled", "status": "blocked",
            "status_detail": null, "harness": null, "title": "a fairly long title for a run", "creator": "somebody",
            "mine": false, "project": null, "model": null, "created_at": "2026-11-28T09:00:00Z",
            "updated_at": "2026-11-28T09:00:00Z", "finished_at": null, "duration_ms": 61000,
            "credits": null, "cost_usd": 1.5
        }))
        .unwrap();
        let now = Millis(agentd_wire::parse_rfc3339_ms("2026-11-28T09:05:00Z").unwrap());
        for width in [200, 100, 80, 60, 40] {
            let t = table(std::slice::from_ref(&item), now, Some(width));
            for line in t.lines() {
                assert!(
                    line.width() <= width.max(MIN_TITLE + 30),
                    "{width}: {line:?}"
                );
            }
            assert!(t.contains("blocked") && t.contains("cli:01234567"), "{t}");
        }
        let wide = table(std::slice::from_ref(&item), now, Some(200));
        assert!(
            wide.contains("a fairly long title for a run")
                && wide.contains("1m 01s")
                && wide.contains("somebody")
        );
        let narrow = table(std::slice::from_ref(&item), now, Some(60));
        assert!(
            !narrow.contains("1m 01s") && narrow.contains('…'),
            "{narrow}"
        );
    }

    #[test]
    fn prompt_lines() {
        let mut s = Summary::default();
        assert_eq!(prompt(&s, ""), "");
        assert_eq!(prompt(&s, "{active} agents"), "");
        s.working = 2;
        s.active = 2;
        assert_eq!(prompt(&s, ""), "⚙2");
        s.blocked = 1;
        s.active = 3;
        s.today = Today {
            failed: 4,
            cost_usd: 1.5,
            credits: 12.25,
            ..Today::default()
        };
        assert_eq!(prompt(&s, ""), "⚙2 🟨1");
        assert_eq!(
            prompt(
                &s,
                "{active}:{working}/{blocked} {failed_today} {cost_today} {credits_today}"
            ),
            "3:2/1 4 $1.50 12.25"
        );
    }
}
