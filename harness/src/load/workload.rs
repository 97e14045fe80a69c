//! Workloads: the built-in ones by name, and mixes read from YAML files.
//!
//! A workload file weights built-in workloads and can give each its own settings and its own
//! slice of the target's accounts, so that some users only read mail over POP3 while others
//! submit and read over IMAP:
//!
//! ```yaml
//! name: office-day
//! mix:
//!   - { workload: submission, weight: 5, per_connection: 3, size: 16KiB, accounts: "0-49" }
//!   - { workload: imap, weight: 3, accounts: "50-99" }
//!   - { workload: pop3, weight: 1, accounts: "50-99" }
//! ```
//!
//! Each new session picks an entry at random in proportion to the weights.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// A built-in workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Port 25: no authentication, mail to local recipients.
    Relay,
    /// Port 587: STARTTLS and AUTH on every connection.
    Submission,
    /// Port 465: implicit TLS and AUTH on every connection.
    Submissions,
    /// POP3 (995, or 110 with STLS): log in, STAT, RETR all, DELE all, QUIT.
    Pop3,
    /// IMAP (993, or 143 with STARTTLS): log in, SELECT, FETCH, STORE, LOGOUT.
    Imap,
    /// IMAP clients idling in INBOX while mail is delivered to them on port 25.
    ImapIdle,
    /// IMAP clients sharing mailboxes, each checking what the server tells it against what it
    /// and the others did.
    ImapMix,
}

impl Kind {
    /// Every built-in workload.
    pub const ALL: [Kind; 7] = [
        Kind::Relay,
        Kind::Submission,
        Kind::Submissions,
        Kind::Pop3,
        Kind::Imap,
        Kind::ImapIdle,
        Kind::ImapMix,
    ];

    /// The name on the command line and in workload files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Relay => "relay",
            Kind::Submission => "submission",
            Kind::Submissions => "submissions",
            Kind::Pop3 => "pop3",
            Kind::Imap => "imap",
            Kind::ImapIdle => "imap-idle",
            Kind::ImapMix => "imap-mix",
        }
    }

    /// Whether the workload sends messages, each of which `--verify` can look for.
    pub fn sends_mail(self) -> bool {
        matches!(self, Kind::Relay | Kind::Submission | Kind::Submissions)
    }

    /// What one completed operation is, for the table.
    pub fn unit(self) -> &'static str {
        match self {
            Kind::Relay | Kind::Submission | Kind::Submissions => "messages",
            Kind::Pop3 | Kind::Imap => "sessions",
            Kind::ImapIdle => "notifications",
            Kind::ImapMix => "commands",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown workload `{name}`: give one of {} or a workload file (.yaml)",
                    names.join(", ")
                )
            })
    }
}

/// A slice of the target's accounts, by index: `"0-49"`, `"7"`, or `"all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountRange {
    /// First index.
    pub first: usize,
    /// Last index, inclusive; `None` for "to the end".
    pub last: Option<usize>,
}

impl AccountRange {
    /// Every account.
    pub const ALL: AccountRange = AccountRange {
        first: 0,
        last: None,
    };

    /// The indices this range picks out of `count` accounts; an error when none.
    pub fn select(&self, count: usize) -> Result<std::ops::Range<usize>, String> {
        let end = self.last.map_or(count, |last| (last + 1).min(count));
        if self.first >= end {
            return Err(format!(
                "account range {self} picks none of the target's {count} accounts"
            ));
        }
        Ok(self.first..end)
    }
}

impl fmt::Display for AccountRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last {
            None if self.first == 0 => f.write_str("all"),
            None => write!(f, "{}-", self.first),
            Some(last) if last == self.first => write!(f, "{last}"),
            Some(last) => write!(f, "{}-{last}", self.first),
        }
    }
}

impl FromStr for AccountRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "all" {
            return Ok(AccountRange::ALL);
        }
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("account range `{text}`: `{part}` is not an index"))
        };
        let range = match text.split_once('-') {
            None => {
                let index = number(text)?;
                AccountRange {
                    first: index,
                    last: Some(index),
                }
            }
            Some((first, "")) => AccountRange {
                first: number(first)?,
                last: None,
            },
            Some((first, last)) => AccountRange {
                first: number(first)?,
                last: Some(number(last)?),
            },
        };
        if range.last.is_some_and(|last| last < range.first) {
            return Err(format!("account range `{text}` ends before it starts"));
        }
        Ok(range)
    }
}

impl<'de> Deserialize<'de> for AccountRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A message size such as `4KiB`, `1MiB`, `512` (octets); `k`/`K`/`KB` are taken as KiB too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let value: usize = digits
            .parse()
            .map_err(|_| format!("size `{text}`: expected a number such as 4KiB or 1024"))?;
        let factor = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1024,
            "m" | "mb" | "mib" => 1024 * 1024,
            other => {
                return Err(format!(
                    "size `{text}`: unknown unit `{other}` (use B, KiB or MiB)"
                ));
            }
        };
        value
            .checked_mul(factor)
            .map(Size)
            .ok_or_else(|| format!("size `{text}` is too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(usize),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(octets) => Ok(Size(octets)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `30s`, `5m`, `1h`, `500ms` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration `{text}`: expected a number such as 30s or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "duration `{text}`: unknown unit `{other}` (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || !(0.0..=7.0 * 86400.0).contains(&seconds) {
        return Err(format!("duration `{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// One weighted part of a workload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Which built-in workload.
    pub workload: Kind,
    /// Relative share of new sessions.
    #[serde(default = "one")]
    pub weight: u32,
    /// Messages (SMTP) or command rounds (IMAP, POP3) per connection; else `--per-connection`.
    #[serde(default)]
    pub per_connection: Option<u32>,
    /// Message size; else `--size`.
    #[serde(default)]
    pub size: Option<Size>,
    /// Which of the target's accounts this part uses; else all (or `--accounts`).
    #[serde(default)]
    pub accounts: Option<AccountRange>,
}

fn one() -> u32 {
    1
}

/// What to run: one built-in workload, or a weighted mix from a file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Name in reports.
    pub name: String,
    /// The weighted parts.
    pub mix: Vec<Entry>,
}

impl Workload {
    /// A built-in workload on its own.
    pub fn builtin(kind: Kind) -> Workload {
        Workload {
            name: kind.name().to_owned(),
            mix: vec![Entry {
                workload: kind,
                weight: 1,
                per_connection: None,
                size: None,
                accounts: None,
            }],
        }
    }

    /// A built-in name, or a path to a workload file (anything ending in `.yaml`/`.yml` or
    /// naming an existing file).
    pub fn from_arg(arg: &str) -> Result<Workload, String> {
        let path = Path::new(arg);
        if arg.ends_with(".yaml") || arg.ends_with(".yml") || path.is_file() {
            Workload::load(path)
        } else {
            Ok(Workload::builtin(arg.parse()?))
        }
    }

    /// Reads and checks a workload file; errors name the file and line.
    pub fn load(path: &Path) -> Result<Workload, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read workload file {}: {error}", path.display()))?;
        let workload: Workload = serde_saphyr::from_str(&text).map_err(|error| {
            let line = error
                .location()
                .map(|location| format!(" line {}", location.line()))
                .unwrap_or_default();
            format!(
                "workload file {}{line}: {}",
                path.display(),
                error.render_with_options(serde_saphyr::render_options! {
                    snippets: serde_saphyr::SnippetMode::Off,
                })
            )
        })?;
        workload
            .validate()
            .map_err(|problem| format!("workload file {}: {problem}", path.display()))?;
        Ok(workload)
    }

    fn validate(&self) -> Result<(), String> {
        if self.mix.is_empty() {
            return Err("`mix` lists no workload".into());
        }
        if self.mix.iter().all(|entry| entry.weight == 0) {
            return Err("every weight in `mix` is 0".into());
        }
        if self.mix.len() > 1 && self.mix.iter().any(|e| e.workload == Kind::ImapIdle) {
            return Err(
                "imap-idle holds a standing population of clients and cannot be mixed; run it on \
                 its own"
                    .into(),
            );
        }
        if self.mix.len() > 1 && self.mix.iter().any(|e| e.workload == Kind::ImapMix) {
            return Err(
                "imap-mix runs its clients on shared mailboxes for the whole run and cannot be \
                 mixed; run it on its own"
                    .into(),
            );
        }
        if let Some(entry) = self.mix.iter().find(|e| e.per_connection == Some(0)) {
            return Err(format!(
                "`per_connection` of the {} entry is 0",
                entry.workload
            ));
        }
        Ok(())
    }

    /// The single kind when the workload is not a mix.
    pub fn single(&self) -> Option<Kind> {
        match self.mix.as_slice() {
            [entry] => Some(entry.workload),
            _ => None,
        }
    }

    /// Picks an entry in proportion to the weights.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> &Entry {
        let total: u64 = self.mix.iter().map(|e| u64::from(e.weight)).sum();
        let mut ticket = rng.u64(0..total.max(1));
        for entry in &self.mix {
            let weight = u64::from(entry.weight);
            if ticket < weight {
                return entry;
            }
            ticket -= weight;
        }
        &self.mix[0]
    }

    /// What throughput counts, for the table.
    pub fn unit(&self) -> &'static str {
        match self.single() {
            Some(kind) => kind.unit(),
            None => "operations",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse_with_units() {
        assert_eq!("4KiB".parse::<Size>(), Ok(Size(4096)));
        assert_eq!("1 MiB".parse::<Size>(), Ok(Size(1 << 20)));
        assert_eq!("512".parse::<Size>(), Ok(Size(512)));
        assert!("4 parsecs".parse::<Size>().unwrap_err().contains("unit"));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn account_ranges_select_indices() {
        let range: AccountRange = "10-19".parse().unwrap();
        assert_eq!(range.select(100), Ok(10..20));
        assert_eq!(range.select(15), Ok(10..15));
        assert!(range.select(5).is_err());
        assert_eq!("all".parse::<AccountRange>().unwrap().select(3), Ok(0..3));
        assert_eq!("7".parse::<AccountRange>().unwrap().select(10), Ok(7..8));
        assert!("9-3".parse::<AccountRange>().is_err());
    }

    #[test]
    fn names_and_files_give_workloads() {
        assert_eq!(
            Workload::from_arg("imap-idle").unwrap().single(),
            Some(Kind::ImapIdle)
        );
        let error = Workload::from_arg("smpt").unwrap_err();
        assert!(error.contains("unknown workload `smpt`"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mix.yaml");
        std::fs::write(
            &path,
            "name: office\nmix:\n  - { workload: submission, weight: 3, size: 16KiB, accounts: \"0-9\" }\n  - { workload: pop3 }\n",
        )
        .unwrap();
        let workload = Workload::from_arg(path.to_str().unwrap()).unwrap();
        assert_eq!(workload.name, "office");
        assert_eq!(workload.mix[0].size, Some(Size(16384)));
        assert_eq!(workload.mix[1].weight, 1);
        let mut rng = fastrand::Rng::with_seed(7);
        let submissions = (0..4000)
            .filter(|_| workload.pick(&mut rng).workload == Kind::Submission)
            .count();
        assert!((2700..3300).contains(&submissions), "{submissions}");
    }

    #[test]
    fn bad_workload_files_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, "name: x\nmix:\n  - { workload: relay, wieght: 2 }\n").unwrap();
        let error = Workload::load(&path).unwrap_err();
        assert!(error.contains("bad.yaml line 3"), "{error}");
        assert!(error.contains("wieght"), "{error}");
        std::fs::write(
            &path,
            "name: x\nmix:\n  - { workload: relay }\n  - { workload: imap-idle }\n",
        )
        .unwrap();
        assert!(
            Workload::load(&path)
                .unwrap_err()
                .contains("cannot be mixed")
        );
    }
}
