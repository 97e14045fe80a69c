//! IMAP framing and command parsing: no panic; the same outcomes whatever the cut of the input
//! into reads; a tag quoted in a rejection is a real tag (no space or line end that could
//! forge a reply); an accepted command, encoded again, decodes to itself.
//!
//! Options: bit 0 `continue_non_sync`, bit 1 small limits (64-octet literals, 192-octet
//! commands) instead of the server's proportions.
#![no_main]

use imap_codec::CommandCodec;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::command::Command;
use libfuzzer_sys::fuzz_target;
use reference_server::imap::framing::{Framed, Framer, Rejection};
use reference_server_fuzz::Input;

#[derive(Debug, PartialEq)]
enum Outcome {
    Command(Box<Command<'static>>),
    Continue,
    Reject(Option<String>, Rejection),
}

fuzz_target!(|bytes: &[u8]| {
    let input = Input::parse(bytes);
    let (max_command, max_literal) = if input.option(1) {
        (192, 64)
    } else {
        (64 * 1024 + 4096, 4096)
    };
    let framer = || {
        let mut framer = Framer::new(max_command, max_literal);
        if input.option(0) {
            framer.continue_non_sync();
        }
        framer
    };

    let mut whole = framer();
    whole.push(input.data);
    let mut expected = Vec::new();
    drain(&mut whole, &mut expected);

    let mut cut = framer();
    let mut outcomes = Vec::new();
    for chunk in input.chunks() {
        cut.push(chunk);
        drain(&mut cut, &mut outcomes);
    }
    assert_eq!(outcomes, expected);

    for outcome in outcomes {
        match outcome {
            Outcome::Reject(Some(tag), _) => assert!(
                !tag.is_empty() && tag.bytes().all(|b| b > b' ' && b < 0x7f),
                "{tag:?}"
            ),
            Outcome::Command(command) => round_trip(&command),
            _ => {}
        }
    }
});

/// Takes outcomes until the framer needs more bytes.
fn drain(framer: &mut Framer, outcomes: &mut Vec<Outcome>) {
    loop {
        outcomes.push(match framer.next_command() {
            Framed::NeedMore => return,
            Framed::Command(command) => Outcome::Command(command),
            Framed::Continue => Outcome::Continue,
            Framed::Reject { tag, reason } => Outcome::Reject(tag, reason),
        });
    }
}

fn round_trip(command: &Command<'static>) {
    let encoded = CommandCodec::default().encode(command).dump();
    let mut framer = Framer::new(u32::MAX, u32::MAX);
    framer.push(&encoded);
    loop {
        match framer.next_command() {
            Framed::Continue => {}
            Framed::Command(again) => {
                assert_eq!(&*again, command, "{:?}", String::from_utf8_lossy(&encoded));
                return;
            }
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(&encoded)),
        }
    }
}
