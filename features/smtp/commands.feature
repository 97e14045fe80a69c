@smtp
Feature: Each SMTP command and its error replies
  RFC 5321 section 4.1 commands, the reply codes of section 4.2 and the command sequence rules
  of section 4.1.4, with RFC 3463 enhanced status codes (RFC 2034).

  @port-smtp @rfc5321-4.1.1.8 @optional @fault-help_unimplemented @should
  Scenario: HELP is answered
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "HELP"
    Then the reply code is one of 211, 214

  @port-smtp @rfc5321-4.1.1.9 @fault-rset_refused @must
  Scenario: NOOP and RSET get 250
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "NOOP"
    Then the reply code is 250
    When the client sends "RSET"
    Then the reply code is 250

  # RFC 5321 3.5.3: 250 or 251 when the server verified the address, 252 when it will not say
  # (whether a server should disclose its users is features/security/auth.feature's question).
  # 550 says the mailbox does not exist, which is wrong for an account; 502 leaves VRFY
  # unimplemented, which 4.5.1 does not allow.
  @port-smtp @rfc5321-3.5.3 @rfc5321-4.5.1 @fault-vrfy_refused @must
  Scenario: VRFY of an account gets 250, 251 or 252
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "VRFY {first}"
    Then the reply code is one of 250, 251, 252

  @port-smtp @rfc5321-4.1.1.10 @fault-quit_refused @must
  Scenario: QUIT gets 221 and the server closes the connection
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "QUIT"
    Then the reply code is 221
    And the connection is closed

  @port-smtp @rfc5321-4.2.4 @fault-unknown_command_502 @should
  Scenario: An unrecognized command gets 500
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "FROBNICATE now"
    Then the reply code is 500

  @port-smtp @rfc5321-4.1.2 @strict-syntax @fault-lenient_paths @should
  # 501 (syntax error in parameters) or 553 (mailbox name not allowed, e.g. mailbox syntax
  # incorrect: RFC 5321 4.2.2 and 4.3.2, OpenSMTPD's answer); the report notes which came.
  Scenario: MAIL without angle brackets is refused as bad syntax
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:{sender}"
    Then the reply code is one of 501, 553

  @port-smtp @rfc5321-4.1.4 @fault-rcpt_without_mail @must
  Scenario: RCPT before MAIL is a bad sequence of commands
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "RCPT TO:<{first}>"
    Then the reply code is 503

  @port-smtp @rfc5321-4.1.4 @fault-data_without_rcpt @must
  Scenario: DATA without a recipient is refused
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "DATA"
    Then the reply is a permanent failure

  @port-smtp @rfc5321-4.1.4 @fault-nested_mail @must
  Scenario: A second MAIL inside a transaction is refused
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "MAIL FROM:<{sender}>"
    Then the reply code is 503

  @port-smtp @rfc5321-4.5.3.1.4 @policy-line-length @fault-no_line_limit @should
  Scenario: A command line over 512 octets is refused with 500
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends a command line of 2000 octets
    Then the reply code is 500
    When the client sends "NOOP"
    Then the reply code is 250

  @port-smtp @policy-error-limit @rfc5321-7.8 @fault-no_error_limit @should
  # A 421 and a close, or (RFC 5321 7.8) a close after the 5yz reply to the last bad command.
  Scenario: A client that keeps sending bad commands is disconnected, with 421 or after a 5yz reply
    Given a client connected to the smtp port
    When the client says EHLO
    And the client keeps sending "FROBNICATE" until the server hangs up
    Then the server hung up with 421, or closed the connection after a 5yz reply

  @port-smtp @needs-ENHANCEDSTATUSCODES @rfc2034-4 @fault-vrfy_refused @must
  Scenario: Every reply after EHLO carries an enhanced status code of its class
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "NOOP"
    And the client sends "VRFY {first}"
    And the client sends "FROBNICATE"
    And the client sends "RCPT TO:<{first}>"
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{unknown}>"
    And the client sends "RCPT TO:<{first}>"
    And the client sends "RSET"
    And the client sends "QUIT"
    Then every reply since EHLO carried an enhanced status code of its class
