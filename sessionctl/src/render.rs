//! Turning stored things into text for people: times, durations, value
//! previews, and aligned tables.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sessionstore::ExportedScope;

/// The most characters of a text preview.
const TEXT_PREVIEW: usize = 48;
/// The most bytes of a hex preview.
const HEX_PREVIEW: usize = 24;

/// Microseconds since the Unix epoch, the unit of every time in `--json`
/// output and in export files. The store keeps times in this unit, so the
/// conversion is exact both ways.
pub fn micros(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A duration in microseconds, the unit of timeouts in `--json` output and export files.
pub fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A time as RFC 3339 in UTC, to the second: `2025-03-01T09:30:00Z`.
pub fn time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_date(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// An optional time, `never` for none.
pub fn time_or_never(t: Option<SystemTime>) -> String {
    t.map_or_else(|| "never".to_owned(), time)
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01.
/// Years are counted in 400-year eras of 146 097 days, each starting on 1 March
/// so that the leap day falls at the end of a year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are in range by construction: day in 1..=31, month in 1..=12.
    (year, month as u32, day as u32)
}

/// A duration the way people write it: `30m`, `1h30m`, `2d`, `250ms`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    for (n, unit) in parts {
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

/// What a stored value looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preview {
    /// A string: the stored bytes are a bincode length prefix followed by
    /// exactly that many bytes of printable UTF-8. Holds the text, perhaps cut.
    Text(String),
    /// Anything else: the first bytes in hex, perhaps cut.
    Hex(String),
}

impl Preview {
    /// Its kind, as `--json` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Preview::Text(_) => "text",
            Preview::Hex(_) => "hex",
        }
    }

    /// The preview itself, without decoration.
    pub fn body(&self) -> &str {
        match self {
            Preview::Text(s) | Preview::Hex(s) => s,
        }
    }

    /// For a table: text quoted, hex after `0x`.
    pub fn shown(&self) -> String {
        match self {
            Preview::Text(s) => format!("{s:?}"),
            Preview::Hex(h) => format!("0x{h}"),
        }
    }
}

/// A preview of the value of `key` in `scope`. Values are bincode, which is
/// not self-describing: a value that the library decodes as a non-empty
/// string with no control characters is shown as text, anything else as hex.
/// An empty string is not taken for text, because its one stored byte `0` is
/// also `0`, `false` and `None`.
pub fn preview(scope: &ExportedScope, key: &str) -> Preview {
    let bytes = scope.values.get(key).map_or(&[][..], Vec::as_slice);
    let text = scope.get::<String>(key).ok().flatten();
    if let Some(text) = text.filter(|t| !t.is_empty() && !t.chars().any(char::is_control)) {
        return Preview::Text(cut_chars(&text, TEXT_PREVIEW));
    }
    let mut hex = String::with_capacity(2 * HEX_PREVIEW + 3);
    for b in bytes.iter().take(HEX_PREVIEW) {
        let _ = write!(hex, "{b:02x}");
    }
    if bytes.len() > HEX_PREVIEW {
        hex.push('…');
    }
    Preview::Hex(hex)
}

fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// Rows of text under a header, printed with aligned columns.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column titles.
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines, columns separated by two spaces, the last one unpadded.
    pub fn render(&self) -> String {
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        let all = || std::iter::once(&header).chain(&self.rows);
        let mut widths = vec![0; header.len()];
        for row in all() {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in all() {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Label and value pairs, labels aligned.
pub fn pairs(items: &[(&str, String)]) -> String {
    let width = items.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (label, value) in items {
        let _ = writeln!(out, "{label:<width$}  {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_around_leap_years_and_eras() {
        assert_eq!(time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC, a leap day in a year divisible by 400.
        assert_eq!(
            time(UNIX_EPOCH + Duration::from_secs(951_827_696)),
            "2000-02-29T12:34:56Z"
        );
        // 2100-03-01, after the February of a year divisible by 100 but not 400.
        assert_eq!(
            time(UNIX_EPOCH + Duration::from_secs(4_107_542_400)),
            "2100-03-01T00:00:00Z"
        );
        assert_eq!(
            time(UNIX_EPOCH + Duration::from_secs(1_735_689_599)),
            "2024-12-31T23:59:59Z"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(1800)), "30m");
        assert_eq!(duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(duration(Duration::from_secs(2 * 86_400 + 5)), "2d5s");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
    }

    fn preview_of(bytes: &[u8]) -> Preview {
        preview(
            &ExportedScope::new(None).with_value("k", bytes.to_vec()),
            "k",
        )
    }

    #[test]
    fn previews() {
        // "ada" as bincode: length 3, then the bytes.
        assert_eq!(preview_of(b"\x03ada"), Preview::Text("ada".into()));
        // 0u32, false, None and "" all encode as one zero byte: not text.
        assert_eq!(preview_of(&[0]), Preview::Hex("00".into()));
        // A length that does not match the payload is not a string.
        assert_eq!(preview_of(b"\x05ada"), Preview::Hex("05616461".into()));
        // Control characters are not printable text.
        assert_eq!(preview_of(b"\x02a\n"), Preview::Hex("02610a".into()));
        // A 300-byte string has the 251 marker and a 2-byte length.
        let mut long = vec![251, 44, 1];
        long.extend(std::iter::repeat_n(b'x', 300));
        let Preview::Text(t) = preview_of(&long) else {
            panic!("not text")
        };
        assert_eq!(t.chars().count(), TEXT_PREVIEW + 1);
        assert!(t.ends_with('…'));
        let Preview::Hex(h) = preview_of(&[7; 30]) else {
            panic!("not hex")
        };
        assert_eq!(h, format!("{}…", "07".repeat(HEX_PREVIEW)));
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["ID", "KEYS"]);
        t.row(vec!["abc".into(), "1".into()]);
        t.row(vec!["a".into(), "22".into()]);
        assert_eq!(t.render(), "ID   KEYS\nabc  1\na    22\n");
    }
}
