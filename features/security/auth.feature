@security @auth
Feature: Guessing passwords and collecting user names is not made easy
  A server on the Internet meets password guessers and address harvesters all day. It need
  not stop them outright, but it must not let a client try password after password at full
  speed (RFC 4954 section 4 asks servers to make guessing costly; RFC 5321 section 7.3 warns of
  VRFY and EXPN), and its answers must not tell a valid name from an invalid one where a
  client has no business knowing. A run of attempts passes when the server disconnects, answers
  something other than the ordinary refusal, or slows down: an answer delayed by a second, or
  answers taking 250 ms on average, within 20 attempts. A run of recipient probes also passes
  when the server then refuses a valid recipient too: a defence that answers every RCPT after a
  few bad ones with the same code and another text (RFC 5321 7.8).

  @port-submission @needs-STARTTLS @rfc4954-4 @fault-no_auth_throttle @fault-no_error_limit @fault-any_password @should
  Scenario: Wrong passwords one after another on the submission port are cut off or slowed down
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    And the client keeps trying wrong passwords for the first account
    Then the server cut the attempts off or slowed them down

  @port-pop3s @rfc5034-4 @rfc2449-8 @fault-no_auth_throttle @fault-no_error_limit @fault-any_password @should
  Scenario: Wrong passwords one after another on the pop3s port are cut off or slowed down
    Given a POP3 client connected to the pop3s port
    When the POP3 client keeps trying wrong passwords for {first}
    Then the server cut the attempts off or slowed them down

  @port-imaps @rfc3501-6.2.3 @fault-no_auth_throttle @fault-no_error_limit @fault-any_password @should
  Scenario: Wrong passwords one after another on the imaps port are cut off or slowed down
    Given an IMAP client connected to the imaps port
    When the IMAP client keeps trying wrong passwords for {first}
    Then the server cut the attempts off or slowed them down

  @port-submission @needs-STARTTLS @rfc4954-4 @fault-auth_reveals_unknown_user @fault-any_password @should
  Scenario: A wrong password and an unknown user get the same AUTH reply
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    Then a wrong password for {first} and a login as {unknown} get the same reply

  @rfc1939-7 @fault-auth_reveals_unknown_user @should
  Scenario: POP3 USER answers an account and an unknown name alike
    Then USER answers {first} and {unknown} alike

  @port-smtp @rfc5321-7.3 @fault-vrfy_discloses_users @should
  Scenario: VRFY does not tell an account from an unknown name
    Given a client connected to the smtp port
    When the client says EHLO
    Then VRFY does not tell {first} from {unknown}

  @port-smtp @rfc5321-7.3 @fault-vrfy_discloses_users @should
  Scenario: EXPN does not tell an account from an unknown name
    Given a client connected to the smtp port
    When the client says EHLO
    Then EXPN does not tell {first} from {unknown}

  @port-smtp @rfc5321-7.8 @fault-no_error_limit @fault-accept_unknown_users @should
  Scenario: A client probing one unknown recipient after another is cut off or slowed down
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client probes unknown recipients
    Then the server cut the attempts off or slowed them down
