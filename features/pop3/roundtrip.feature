@pop3
Feature: What goes in over SMTP comes out of POP3 octet for octet
  A message submitted on port 587 with 8-bit text, lines at the length limit, lines that begin
  with a dot and a 5 MB attachment is retrieved over POP3 with the same SHA-256 (after the trace
  header fields the receiving server prepends).

  @port-submission @needs-8BITMIME @rfc1939-7 @rfc5321-4.5.2 @fault-pop3_no_dot_stuffing @fault-no_dot_unstuffing @fault-strip_8bit @fault-discard_mail @must
  Scenario: A large 8-bit message with dot lines survives SMTP submission and POP3 retrieval
    Given an authenticated client on the submission port
    When the client sends the round-trip test message to {first}
    Then the reply code is 250
    And POP3 retrieves the round-trip test message for {first} with the same SHA-256

  @pop-before-smtp @port-submission @fault-pop_before_smtp_ignored @should
  Scenario: POP-before-SMTP: after a POP3 login, the same address may submit without AUTH
    Given {first} has logged in over POP3 from the client's address
    And a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    And the client sends a message to {second}
    Then the reply code is 250
    And {second} receives the message
