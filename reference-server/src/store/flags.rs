//! Message flags as the store keeps them (RFC 3501 2.3.2): validated, compared
//! case-insensitively, system flags in their standard spelling.

/// How [`Store::store_flags`](super::Store::store_flags) combines the given flags with a
/// message's flags (RFC 3501 6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `+FLAGS`: add the given flags.
    Add,
    /// `-FLAGS`: remove the given flags.
    Remove,
    /// `FLAGS`: make the given flags the message's only flags.
    Replace,
}

/// The system flags a client may set, in their standard spelling. `\Recent` is not among them: it
/// is session state (see [`Store::claim_recent`](super::Store::claim_recent)).
const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// Marks a message as read; messages without it count as unseen.
pub(super) const SEEN: &str = "\\Seen";

/// Marks a message for removal by EXPUNGE.
pub(super) const DELETED: &str = "\\Deleted";

/// Given by clients in STORE and APPEND, but never stored.
const RECENT: &str = "\\Recent";

/// Validates flags from a client and brings them into the form the store keeps: system flags in
/// their standard spelling, each flag once whatever its case, `\Recent` dropped, sorted.
///
/// Returns the first invalid flag as the error: an unknown `\` flag, or a keyword that is not an
/// IMAP atom (RFC 3501 9).
pub(super) fn normalise(flags: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(flags.len());
    for flag in flags {
        let flag = if let Some(name) = flag.strip_prefix('\\') {
            if name.eq_ignore_ascii_case(&RECENT[1..]) {
                continue;
            }
            match SYSTEM_FLAGS
                .iter()
                .find(|known| known[1..].eq_ignore_ascii_case(name))
            {
                Some(known) => (*known).to_owned(),
                None => return Err(flag.clone()),
            }
        } else if !flag.is_empty() && flag.bytes().all(is_atom_char) {
            flag.clone()
        } else {
            return Err(flag.clone());
        };
        if !out.iter().any(|seen| seen.eq_ignore_ascii_case(&flag)) {
            out.push(flag);
        }
    }
    sort(&mut out);
    Ok(out)
}

/// ATOM-CHAR of RFC 3501 9: printable ASCII except atom-specials.
fn is_atom_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !b"(){%*\"\\]".contains(&b)
}

/// Sorts flags the way SQLite's NOCASE collation orders them, which is how reads return them.
pub(super) fn sort(flags: &mut [String]) {
    flags.sort_by_key(|f| f.to_ascii_lowercase());
}

/// What STORE does to one message's flags.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Edit {
    /// Flags to insert, as given.
    pub(super) add: Vec<String>,
    /// Flags to delete, as stored.
    pub(super) remove: Vec<String>,
    /// The message's flags afterwards, sorted.
    pub(super) result: Vec<String>,
}

impl Edit {
    /// True when the flags stay as they are, so the message keeps its mod-sequence.
    pub(super) fn is_noop(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Applies `op` with `given` (normalised) to a message's `current` flags. A flag present in
/// another case counts as present and keeps its stored spelling.
pub(super) fn apply(current: &[String], op: FlagOp, given: &[String]) -> Edit {
    let has = |set: &[String], flag: &str| set.iter().any(|f| f.eq_ignore_ascii_case(flag));
    let add: Vec<String> = match op {
        FlagOp::Add | FlagOp::Replace => {
            given.iter().filter(|f| !has(current, f)).cloned().collect()
        }
        FlagOp::Remove => Vec::new(),
    };
    let remove: Vec<String> = match op {
        FlagOp::Remove => current.iter().filter(|f| has(given, f)).cloned().collect(),
        FlagOp::Replace => current.iter().filter(|f| !has(given, f)).cloned().collect(),
        FlagOp::Add => Vec::new(),
    };
    let mut result: Vec<String> = current
        .iter()
        .filter(|f| !remove.contains(f))
        .chain(&add)
        .cloned()
        .collect();
    sort(&mut result);
    Edit {
        add,
        remove,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(flags: &[&str]) -> Vec<String> {
        flags.iter().map(|f| (*f).to_owned()).collect()
    }

    #[test]
    fn normalise_spells_system_flags_dedups_sorts_and_drops_recent() {
        let got = normalise(&strings(&[
            "\\SEEN",
            "$Label",
            "\\recent",
            "\\seen",
            "$label",
            "\\Answered",
        ]))
        .expect("valid");
        assert_eq!(got, strings(&["$Label", "\\Answered", "\\Seen"]));
    }

    #[test]
    fn normalise_refuses_unknown_system_flags_and_non_atoms() {
        for bad in [
            "\\Bogus",
            "",
            "two words",
            "a(b",
            "quote\"",
            "star*",
            "br]",
            "é",
            "\\",
        ] {
            assert_eq!(
                normalise(&strings(&["\\Seen", bad])),
                Err(bad.to_owned()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn apply_compares_case_insensitively_and_keeps_stored_spelling() {
        let current = strings(&["$Work", "\\Seen"]);
        let edit = apply(&current, FlagOp::Add, &strings(&["$work"]));
        assert!(edit.is_noop(), "{edit:?}");
        assert_eq!(edit.result, current);

        let edit = apply(&current, FlagOp::Remove, &strings(&["$WORK", "\\Draft"]));
        assert_eq!(edit.remove, strings(&["$Work"]));
        assert_eq!(edit.result, strings(&["\\Seen"]));

        let edit = apply(&current, FlagOp::Replace, &strings(&["$work", "\\Flagged"]));
        assert_eq!(edit.add, strings(&["\\Flagged"]));
        assert_eq!(edit.remove, strings(&["\\Seen"]));
        assert_eq!(edit.result, strings(&["$Work", "\\Flagged"]));

        let edit = apply(&current, FlagOp::Replace, &strings(&["$WORK", "\\Seen"]));
        assert!(edit.is_noop(), "{edit:?}");
    }
}
