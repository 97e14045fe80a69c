//! What FETCH ENVELOPE and FETCH BODYSTRUCTURE cost the reference server per message: its
//! header scan and address parser for ENVELOPE, its MIME scan (with mail-parser for
//! Content-Type parameters) for BODYSTRUCTURE. Three messages: a plain text mail, a
//! multipart/alternative with a PDF attached, and a forward that carries a whole multipart
//! message as message/rfc822.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use imap_codec::imap_types::body::{BodyStructure, SpecificFields};
use imap_codec::imap_types::envelope::Envelope;
use reference_server::imap::message::{body_structure, envelope};

const HEADER: &str = "\
Return-Path: <joerg@example.org>\r
Received: from mx.example.org (mx.example.org [192.0.2.25])\r
\tby mail.example.test with ESMTPS id 4711\r
\tfor <alice@example.test>; Tue, 05 Mar 2024 10:15:02 +0100\r
From: =?UTF-8?Q?J=C3=B6rg_Beispiel?= <joerg@example.org>\r
To: Alice <alice@example.test>, bob@example.test\r
Cc: Team: carol@example.com, \"Dave D.\" <dave@example.com>;\r
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?=\r
Date: Tue, 05 Mar 2024 10:15:00 +0100\r
Message-ID: <20240305101500.4711@example.org>\r
In-Reply-To: <abcd@example.test>\r
References: <0001@example.test> <abcd@example.test>\r
MIME-Version: 1.0\r
";

/// Prose lines, `lines` of them.
fn text(lines: usize) -> String {
    (0..lines)
        .map(|i| format!("Line {i} of the message, as ordinary as the rest of it is.\r\n"))
        .collect()
}

/// Base64 lines of 76 characters standing for `octets` of binary data.
fn base64(octets: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let chars: Vec<u8> = (0..octets.div_ceil(3) * 4)
        .map(|i| ALPHABET[(i * 37 + i / 7) % 64])
        .collect();
    chars
        .chunks(76)
        .map(|line| format!("{}\r\n", String::from_utf8_lossy(line)))
        .collect()
}

fn simple() -> String {
    format!(
        "{HEADER}Content-Type: text/plain; charset=utf-8; format=flowed\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{}",
        text(40)
    )
}

/// multipart/mixed: a multipart/alternative (plain and HTML) and a 24 KiB PDF.
fn alternative_with_attachment() -> String {
    format!(
        "{HEADER}Content-Type: multipart/mixed; boundary=\"=_outer_4711\"\r\n\r\n\
         This is a multi-part message in MIME format.\r\n\
         --=_outer_4711\r\n\
         Content-Type: multipart/alternative; boundary=\"=_alt_4711\"\r\n\r\n\
         --=_alt_4711\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{}\
         --=_alt_4711\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n<html><body>\r\n{}</body></html>\r\n\
         --=_alt_4711--\r\n\r\n\
         --=_outer_4711\r\n\
         Content-Type: application/pdf; name=\"Q1 report.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename*=utf-8''Q1%20report.pdf; size=24576\r\n\
         Content-Description: Quarterly report\r\n\
         Content-ID: <pdf1@example.org>\r\n\r\n{}\
         --=_outer_4711--\r\n",
        text(20),
        text(20).replace("\r\n", "<br>\r\n"),
        base64(24 * 1024)
    )
}

/// multipart/mixed: a note and, as message/rfc822, the whole previous message.
fn forwarded() -> String {
    format!(
        "From: Carol <carol@example.com>\r\n\
         To: alice@example.test\r\n\
         Subject: Fwd: =?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?=\r\n\
         Date: Wed, 6 Mar 2024 23:30:00 -0800\r\n\
         Message-ID: <fwd-1@example.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b1\r\n\r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n{}\
         --b1\r\n\
         Content-Type: message/rfc822\r\n\
         Content-Disposition: inline\r\n\r\n{}\
         --b1--\r\n",
        text(5),
        alternative_with_attachment()
    )
}

/// The tree as `mixed(alternative(text/plain,text/html),application/pdf)`, for checking once.
fn shape(structure: &BodyStructure<'_>) -> String {
    let lower = |bytes: &[u8]| String::from_utf8_lossy(bytes).to_ascii_lowercase();
    match structure {
        BodyStructure::Multi {
            bodies, subtype, ..
        } => {
            let parts: Vec<String> = bodies.as_ref().iter().map(shape).collect();
            format!("{}({})", lower(subtype.as_ref()), parts.join(","))
        }
        BodyStructure::Single { body, .. } => match &body.specific {
            SpecificFields::Basic { r#type, subtype } => {
                format!("{}/{}", lower(r#type.as_ref()), lower(subtype.as_ref()))
            }
            SpecificFields::Text { subtype, .. } => format!("text/{}", lower(subtype.as_ref())),
            SpecificFields::Message { body_structure, .. } => {
                format!("message/rfc822[{}]", shape(body_structure))
            }
        },
    }
}

/// Leaf parts, counted cheaply on every iteration.
fn leaves(structure: &BodyStructure<'_>) -> usize {
    match structure {
        BodyStructure::Multi { bodies, .. } => bodies.as_ref().iter().map(leaves).sum(),
        BodyStructure::Single { body, .. } => match &body.specific {
            SpecificFields::Message { body_structure, .. } => leaves(body_structure),
            _ => 1,
        },
    }
}

fn subject(envelope: &Envelope<'_>) -> Vec<u8> {
    envelope
        .subject
        .0
        .as_ref()
        .map(|s| s.as_ref().to_vec())
        .unwrap_or_default()
}

fn mime(c: &mut Criterion) {
    let cases = [
        ("simple", simple(), "text/plain", (2, 4)),
        (
            "alternative_attachment",
            alternative_with_attachment(),
            "mixed(alternative(text/plain,text/html),application/pdf)",
            (2, 4),
        ),
        (
            "forwarded",
            forwarded(),
            "mixed(text/plain,message/rfc822[mixed(alternative(text/plain,text/html),\
             application/pdf)])",
            (1, 0),
        ),
    ];
    let mut parts = Vec::new();
    for (name, message, expected, (to, cc)) in &cases {
        let structure = body_structure(message.as_bytes(), true);
        assert_eq!(shape(&structure), *expected, "{name}");
        parts.push(leaves(&structure));
        let envelope = envelope(message.as_bytes());
        assert!(subject(&envelope).ends_with(b"=?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?="));
        assert_eq!(envelope.from.len(), 1, "{name}");
        assert_eq!(envelope.to.len(), *to, "{name}");
        // The Cc group comes as its start, two members and its end.
        assert_eq!(envelope.cc.len(), *cc, "{name}");
    }

    let mut group = c.benchmark_group("imap_envelope");
    group.throughput(Throughput::Elements(1));
    for (name, message, _, _) in &cases {
        group.bench_with_input(BenchmarkId::from_parameter(name), message, |b, message| {
            b.iter(|| assert_eq!(envelope(black_box(message.as_bytes())).from.len(), 1));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("imap_bodystructure");
    group.throughput(Throughput::Elements(1));
    for ((name, message, _, _), &parts) in cases.iter().zip(&parts) {
        group.bench_with_input(BenchmarkId::from_parameter(name), message, |b, message| {
            b.iter(|| {
                let structure = body_structure(black_box(message.as_bytes()), true);
                assert_eq!(leaves(&structure), parts);
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = benches::short();
    targets = mime
}
criterion_main!(benches);
