//! Misbehaviour on request.
//!
//! Two uses: clients under test meet injected 4xx/5xx replies, delays and disconnects; and the
//! harness's own tests run against a server that behaves like a misconfigured or vulnerable one,
//! to show that each conformance check can fail.

use std::time::Duration;

use serde::Deserialize;

/// The `faults:` section of the config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Injected behaviour at chosen protocol points.
    pub commands: Vec<CommandFault>,
    /// Accept mail for any domain without authentication (an open relay). Foreign-domain mail
    /// accepted this way is discarded: it only has to look accepted.
    pub open_relay: bool,
    /// Advertise and accept AUTH before STARTTLS on the submission and smtp ports.
    pub auth_before_tls: bool,
    /// Keep bytes that arrived after STARTTLS but before the TLS handshake and execute them
    /// inside the TLS session (CVE-2011-0411 class).
    pub starttls_injection: bool,
    /// Take a bare LF or bare CR as a line end inside DATA, so `<LF>.<LF>`, `<LF>.<CRLF>`,
    /// `<CRLF>.<LF>` and `<CR>.<CR>` end the message (the SMTP smuggling class), and accept
    /// bare line ends instead of rejecting the message.
    pub bare_lf_end_of_data: bool,
    /// Answer a TLS 1.0 or 1.1 ClientHello with a ServerHello of that version, as a server
    /// with legacy protocols enabled would (rustls cannot speak them, so the session goes no
    /// further than that reply; it only has to show on the wire).
    pub legacy_tls: bool,
}

/// One injected behaviour.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandFault {
    /// Where it applies: an SMTP verb (`MAIL`, `RCPT`, ...), `CONNECT` (the greeting), `EOM`
    /// (after the message data, instead of storing it), or `*` (every command).
    pub at: String,
    /// Chance per occurrence, 0.0 to 1.0.
    #[serde(default = "always")]
    pub probability: f64,
    /// What happens.
    pub action: FaultAction,
}

fn always() -> f64 {
    1.0
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this reply instead of processing the command.
    Reply {
        /// Reply code, 400-599 (`421` also closes the connection).
        code: u16,
        /// Reply text, enhanced status code included if wanted.
        text: String,
    },
    /// Wait this many milliseconds, then process the command normally.
    DelayMs(u64),
    /// Close the connection without a reply.
    Disconnect,
}

/// The effect of faults at one protocol point, after the dice are rolled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Injection {
    /// Time to wait first.
    pub delay: Duration,
    /// Then either replace the reply, or drop the connection, or proceed normally.
    pub outcome: Option<InjectedOutcome>,
}

/// An outcome that replaces normal processing.
#[derive(Debug, Clone, PartialEq)]
pub enum InjectedOutcome {
    /// Send this reply instead.
    Reply(u16, String),
    /// Close the connection silently.
    Disconnect,
}

impl Faults {
    /// Whether any fault is configured (the server logs a loud warning).
    pub fn any(&self) -> bool {
        !self.commands.is_empty() || !self.policy_faults().is_empty()
    }

    /// Names of every policy fault, for `--help` texts and self-tests.
    pub const POLICY_NAMES: [&'static str; 5] = [
        "open_relay",
        "auth_before_tls",
        "starttls_injection",
        "bare_lf_end_of_data",
        "legacy_tls",
    ];

    /// Names of the policy faults switched on.
    pub fn policy_faults(&self) -> Vec<&'static str> {
        [
            ("open_relay", self.open_relay),
            ("auth_before_tls", self.auth_before_tls),
            ("starttls_injection", self.starttls_injection),
            ("bare_lf_end_of_data", self.bare_lf_end_of_data),
            ("legacy_tls", self.legacy_tls),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }

    /// Switches on a policy fault by name; false when there is no such fault.
    pub fn enable_policy(&mut self, name: &str) -> bool {
        let flag = match name {
            "open_relay" => &mut self.open_relay,
            "auth_before_tls" => &mut self.auth_before_tls,
            "starttls_injection" => &mut self.starttls_injection,
            "bare_lf_end_of_data" => &mut self.bare_lf_end_of_data,
            "legacy_tls" => &mut self.legacy_tls,
            _ => return false,
        };
        *flag = true;
        true
    }

    /// Checks value ranges; the message names the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        for (index, fault) in self.commands.iter().enumerate() {
            if !(0.0..=1.0).contains(&fault.probability) {
                return Err(format!(
                    "faults.commands[{index}].probability must be between 0.0 and 1.0"
                ));
            }
            if fault.at.is_empty() {
                return Err(format!("faults.commands[{index}].at must name a command"));
            }
            if let FaultAction::Reply { code, text } = &fault.action {
                if !(400..=599).contains(code) {
                    return Err(format!(
                        "faults.commands[{index}].action.reply.code {code} is not a 4xx/5xx code"
                    ));
                }
                if text.contains(['\r', '\n']) {
                    return Err(format!(
                        "faults.commands[{index}].action.reply.text must be one line"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Rolls the dice for every fault at `point` (`CONNECT`, `EOM` or a verb).
    pub fn inject(&self, point: &str) -> Injection {
        let mut injection = Injection::default();
        for fault in &self.commands {
            let applies = fault.at == "*" || fault.at.eq_ignore_ascii_case(point);
            if !applies || fastrand::f64() >= fault.probability {
                continue;
            }
            match &fault.action {
                FaultAction::DelayMs(ms) => injection.delay += Duration::from_millis(*ms),
                FaultAction::Reply { code, text } if injection.outcome.is_none() => {
                    injection.outcome = Some(InjectedOutcome::Reply(*code, text.clone()));
                }
                FaultAction::Disconnect if injection.outcome.is_none() => {
                    injection.outcome = Some(InjectedOutcome::Disconnect);
                }
                _ => {}
            }
        }
        injection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(at: &str, probability: f64, action: FaultAction) -> CommandFault {
        CommandFault {
            at: at.into(),
            probability,
            action,
        }
    }

    #[test]
    fn certain_faults_fire_and_impossible_ones_never_do() {
        let faults = Faults {
            commands: vec![
                fault("rcpt", 1.0, FaultAction::DelayMs(5)),
                fault(
                    "RCPT",
                    1.0,
                    FaultAction::Reply {
                        code: 451,
                        text: "4.3.0 try later".into(),
                    },
                ),
                fault("MAIL", 0.0, FaultAction::Disconnect),
            ],
            ..Faults::default()
        };
        let rcpt = faults.inject("RCPT");
        assert_eq!(rcpt.delay, Duration::from_millis(5));
        assert_eq!(
            rcpt.outcome,
            Some(InjectedOutcome::Reply(451, "4.3.0 try later".into()))
        );
        for _ in 0..100 {
            assert_eq!(faults.inject("MAIL"), Injection::default());
        }
        assert_eq!(faults.inject("DATA"), Injection::default());
    }

    #[test]
    fn validation_names_the_entry() {
        let faults = Faults {
            commands: vec![fault(
                "MAIL",
                1.0,
                FaultAction::Reply {
                    code: 250,
                    text: "ok".into(),
                },
            )],
            ..Faults::default()
        };
        assert!(faults.validate().unwrap_err().contains("commands[0]"));
    }

    #[test]
    fn policy_faults_by_name() {
        let mut faults = Faults::default();
        assert!(!faults.any());
        assert!(faults.enable_policy("open_relay"));
        assert!(!faults.enable_policy("no_such_fault"));
        assert_eq!(faults.policy_faults(), ["open_relay"]);
    }
}
