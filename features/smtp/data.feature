@smtp
Feature: Message data: dot-stuffing, trace headers, and CRLF-only line ends
  RFC 5321 section 4.5.2 transparency, section 4.4 trace information, and section 2.3.8: only
  <CRLF>.<CRLF> ends the data; a bare LF or CR must never end it (SMTP smuggling, checked in
  features/security/smuggling.feature). This suite also expects messages with bare line ends to
  be refused rather than guessed at.

  @port-smtp @rfc5321-4.5.2 @fault-no_dot_unstuffing @fault-discard_mail @must
  Scenario: Lines that begin with a dot survive the round trip
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{first}>"
    And the client sends "DATA"
    And the client sends the message body:
      """
      Subject: dots

      .
      ..
      .leading dot
      ...three
      trailing dot.
      """
    Then the reply code is 250
    And {first} receives the message exactly as sent

  @port-smtp @rfc5321-4.4 @fault-no_trace_headers @fault-discard_mail @must
  Scenario: Delivery adds Return-Path and a Received trace header
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends a message to {first}
    Then the reply code is 250
    And {first} receives the message with Return-Path <{sender}> and a Received header

  @port-smtp @rfc5321-2.3.8 @bare-line-ends @fault-bare_lf_end_of_data @should
  Scenario: A message with a bare LF is refused
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{first}>"
    And the client sends "DATA"
    And the client sends the raw message data "Subject: bare lf\r\n\r\nline one\nline two\r\n.\r\n"
    Then the reply is a permanent failure
    And {first} does not receive the message

  @port-smtp @rfc5321-2.3.8 @bare-line-ends @fault-bare_lf_end_of_data @should
  Scenario: A message with a bare CR is refused
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{first}>"
    And the client sends "DATA"
    And the client sends the raw message data "Subject: bare cr\r\n\r\nline one\rline two\r\n.\r\n"
    Then the reply is a permanent failure
    And {first} does not receive the message
