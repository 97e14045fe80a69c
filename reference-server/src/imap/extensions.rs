//! The IMAP extensions a session offers. All of them by default; the variants leave some out, and
//! the server then behaves as one that never had them: the capability is not listed, a command
//! of the extension is an unknown command (BAD), and syntax the extension adds to a base command
//! is a syntax error (BAD), as RFC 3501 section 6 and 7.1.3 have it for anything a server does
//! not recognise.

use imap_codec::imap_types::command::{CommandBody, SelectParameter};
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::status::StatusDataItemName;

use crate::config::Config;
use crate::variants::Variant;

/// An optional IMAP4rev1 extension the reference server has built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// RFC 7888 non-synchronising literals.
    LiteralPlus,
    /// RFC 2971 ID.
    Id,
    /// RFC 2342 NAMESPACE.
    Namespace,
    /// RFC 5161 ENABLE.
    Enable,
    /// RFC 4315 UID EXPUNGE, APPENDUID and COPYUID.
    Uidplus,
    /// RFC 6851 MOVE.
    Move,
    /// RFC 3691 UNSELECT.
    Unselect,
    /// RFC 3348 `\HasChildren` and `\HasNoChildren`.
    Children,
    /// RFC 6154 special-use attributes in LIST.
    SpecialUse,
    /// RFC 2177 IDLE.
    Idle,
    /// RFC 7162 CONDSTORE.
    Condstore,
    /// RFC 4959 initial responses in AUTHENTICATE.
    SaslIr,
}

impl Extension {
    /// In the order CAPABILITY lists them; SASL-IR goes with the AUTH= mechanisms.
    const LISTED: [Extension; 11] = [
        Extension::LiteralPlus,
        Extension::Id,
        Extension::Namespace,
        Extension::Enable,
        Extension::Uidplus,
        Extension::Move,
        Extension::Unselect,
        Extension::Children,
        Extension::SpecialUse,
        Extension::Idle,
        Extension::Condstore,
    ];

    /// The capability name.
    pub fn capability(self) -> &'static str {
        match self {
            Extension::LiteralPlus => "LITERAL+",
            Extension::Id => "ID",
            Extension::Namespace => "NAMESPACE",
            Extension::Enable => "ENABLE",
            Extension::Uidplus => "UIDPLUS",
            Extension::Move => "MOVE",
            Extension::Unselect => "UNSELECT",
            Extension::Children => "CHILDREN",
            Extension::SpecialUse => "SPECIAL-USE",
            Extension::Idle => "IDLE",
            Extension::Condstore => "CONDSTORE",
            Extension::SaslIr => "SASL-IR",
        }
    }

    /// The variant that leaves the extension out, if there is one.
    fn left_out_by(self) -> Option<Variant> {
        match self {
            Extension::LiteralPlus => Some(Variant::ImapNoLiteralPlus),
            Extension::Namespace => Some(Variant::ImapNoNamespace),
            Extension::Uidplus => Some(Variant::ImapNoUidplus),
            Extension::Move => Some(Variant::ImapNoMove),
            Extension::Unselect => Some(Variant::ImapNoUnselect),
            Extension::Children => Some(Variant::ImapNoChildren),
            Extension::SpecialUse => Some(Variant::ImapWithoutSpecialUse),
            Extension::Idle => Some(Variant::ImapNoIdle),
            Extension::Condstore => Some(Variant::ImapNoCondstore),
            Extension::SaslIr => Some(Variant::ImapNoSaslIr),
            Extension::Id | Extension::Enable => None,
        }
    }
}

/// The extensions on offer under a config's variants.
#[derive(Debug, Clone)]
pub struct Extensions {
    offered: Vec<Extension>,
}

impl Extensions {
    /// What `config` offers.
    pub fn of(config: &Config) -> Extensions {
        let mut offered: Vec<Extension> = Extension::LISTED.to_vec();
        offered.push(Extension::SaslIr);
        offered.retain(|e| e.left_out_by().is_none_or(|v| !config.variants.has(v)));
        Extensions { offered }
    }

    /// Whether `extension` is offered.
    pub fn offers(&self, extension: Extension) -> bool {
        self.offered.contains(&extension)
    }

    /// The capabilities of every state, after `IMAP4rev1`, in the order they are listed.
    pub fn listed(&self) -> impl Iterator<Item = &'static str> + '_ {
        Extension::LISTED
            .into_iter()
            .filter(|e| self.offers(*e))
            .map(Extension::capability)
    }

    /// Why `body` is refused with BAD, when it uses an extension that is not offered: what a
    /// server without the extension would see, an unknown command or a syntax error.
    pub fn refusal(&self, body: &CommandBody<'_>) -> Option<String> {
        let unknown = |extension: Extension| {
            (!self.offers(extension)).then(|| format!("Unknown command {}", body.name()))
        };
        let syntax = |extension: Extension, what: &str| {
            (!self.offers(extension))
                .then(|| format!("Syntax error in {}: unexpected {what}", body.name()))
        };
        match body {
            CommandBody::Move { .. } => unknown(Extension::Move),
            CommandBody::Unselect => unknown(Extension::Unselect),
            CommandBody::Idle => unknown(Extension::Idle),
            CommandBody::Namespace => unknown(Extension::Namespace),
            // `UID EXPUNGE` is one of the UID command's verbs only with UIDPLUS.
            CommandBody::ExpungeUid { .. } => syntax(Extension::Uidplus, "EXPUNGE after UID"),
            CommandBody::Authenticate {
                initial_response: Some(_),
                ..
            } => syntax(Extension::SaslIr, "initial response"),
            CommandBody::Select { parameters, .. } | CommandBody::Examine { parameters, .. }
                if parameters
                    .iter()
                    .any(|p| matches!(p, SelectParameter::CondStore)) =>
            {
                syntax(Extension::Condstore, "parameter list")
            }
            CommandBody::Store { modifiers, .. } if !modifiers.is_empty() => {
                syntax(Extension::Condstore, "modifier list")
            }
            CommandBody::Fetch {
                modifiers,
                macro_or_item_names,
                ..
            } if !modifiers.is_empty() || asks_modseq(macro_or_item_names) => {
                syntax(Extension::Condstore, "MODSEQ")
            }
            CommandBody::Status { item_names, .. }
                if item_names.contains(&StatusDataItemName::HighestModSeq) =>
            {
                syntax(Extension::Condstore, "HIGHESTMODSEQ")
            }
            CommandBody::Search { criteria, .. }
                if criteria
                    .as_ref()
                    .iter()
                    .any(super::selected::mentions_modseq) =>
            {
                syntax(Extension::Condstore, "MODSEQ")
            }
            _ => None,
        }
    }
}

fn asks_modseq(names: &MacroOrMessageDataItemNames<'_>) -> bool {
    match names {
        MacroOrMessageDataItemNames::Macro(_) => false,
        MacroOrMessageDataItemNames::MessageDataItemNames(names) => {
            names.contains(&MessageDataItemName::ModSeq)
        }
    }
}

#[cfg(test)]
mod tests {
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder as _;

    use super::*;

    fn extensions(variants: &[Variant]) -> Extensions {
        let mut config = Config::defaults();
        for variant in variants {
            config.variants.insert(*variant);
        }
        Extensions::of(&config)
    }

    fn refusal(extensions: &Extensions, line: &str) -> Option<String> {
        let wire = format!("{line}\r\n");
        let (_, command) = CommandCodec::default()
            .decode(wire.as_bytes())
            .unwrap_or_else(|e| panic!("{line}: {e:?}"));
        extensions.refusal(&command.body)
    }

    #[test]
    fn everything_is_offered_by_default() {
        let all = extensions(&[]);
        let listed: Vec<&str> = all.listed().collect();
        assert_eq!(
            listed.join(" "),
            "LITERAL+ ID NAMESPACE ENABLE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE IDLE CONDSTORE"
        );
        assert!(all.offers(Extension::SaslIr));
        for line in [
            "a MOVE 1 x",
            "a UNSELECT",
            "a IDLE",
            "a NAMESPACE",
            "a UID EXPUNGE 1",
            "a AUTHENTICATE PLAIN AHVAcA==",
            "a SELECT x (CONDSTORE)",
            "a STORE 1 (UNCHANGEDSINCE 5) +FLAGS (\\Seen)",
            "a FETCH 1 (FLAGS MODSEQ)",
            "a STATUS x (HIGHESTMODSEQ)",
            "a SEARCH MODSEQ 5",
        ] {
            assert_eq!(refusal(&all, line), None, "{line}");
        }
    }

    #[test]
    fn a_left_out_extension_is_unknown_or_a_syntax_error() {
        let cases: [(Variant, &str, &str); 10] = [
            (Variant::ImapNoMove, "a UID MOVE 1 x", "MOVE"),
            (Variant::ImapNoUnselect, "a UNSELECT", "UNSELECT"),
            (Variant::ImapNoIdle, "a IDLE", "IDLE"),
            (Variant::ImapNoNamespace, "a NAMESPACE", "NAMESPACE"),
            (Variant::ImapNoUidplus, "a UID EXPUNGE 1", "UIDPLUS"),
            (
                Variant::ImapNoSaslIr,
                "a AUTHENTICATE PLAIN AHVAcA==",
                "SASL-IR",
            ),
            (
                Variant::ImapNoCondstore,
                "a SELECT x (CONDSTORE)",
                "CONDSTORE",
            ),
            (
                Variant::ImapNoCondstore,
                "a STORE 1 (UNCHANGEDSINCE 5) +FLAGS (\\Seen)",
                "CONDSTORE",
            ),
            (Variant::ImapNoCondstore, "a FETCH 1 (MODSEQ)", "CONDSTORE"),
            (
                Variant::ImapNoCondstore,
                "a SEARCH NOT MODSEQ 5",
                "CONDSTORE",
            ),
        ];
        for (variant, line, capability) in cases {
            let without = extensions(&[variant]);
            assert!(
                refusal(&without, line).is_some(),
                "{line} under {variant:?}"
            );
            assert!(
                !without.listed().any(|c| c == capability),
                "{capability} still listed under {variant:?}"
            );
            // The base forms of the same commands still work.
            assert_eq!(refusal(&without, "a FETCH 1 (FLAGS)"), None);
            assert_eq!(refusal(&without, "a AUTHENTICATE PLAIN"), None);
            assert_eq!(refusal(&without, "a SELECT x"), None);
        }
        assert!(!extensions(&[Variant::ImapNoSaslIr]).offers(Extension::SaslIr));
        assert!(!extensions(&[Variant::ImapNoLiteralPlus]).offers(Extension::LiteralPlus));
        assert!(!extensions(&[Variant::ImapWithoutSpecialUse]).offers(Extension::SpecialUse));
        assert!(!extensions(&[Variant::ImapNoChildren]).offers(Extension::Children));
    }
}
