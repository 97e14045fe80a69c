@pop3
Feature: POP3 login: USER/PASS and SASL PLAIN, wrong passwords, one session per maildrop
  RFC 1939 sections 7 and 8, RFC 5034 (SASL), RFC 2449 section 8 (the IN-USE response code).
  USER and SASL PLAIN are each optional (RFC 2449 6.2 and 6.3): a scenario about one runs only
  where CAPA lists it, and the IN-USE code is required only where CAPA lists RESP-CODES.

  @rfc1939-7 @needs-pop3-USER @fault-any_password @must
  Scenario: A wrong password is refused and the right one then works
    Given a POP3 client ready to log in
    When the POP3 client logs in as {first} with a wrong password
    Then the POP3 response is -ERR
    When the POP3 client logs in as {first}
    Then the POP3 response is +OK

  @rfc5034-4 @needs-pop3-SASL-PLAIN @fault-any_password @must
  Scenario: AUTH PLAIN with a wrong password is refused and with the right one succeeds
    Given a POP3 client ready to log in
    When the POP3 client authenticates with AUTH PLAIN as {first} with a wrong password
    Then the POP3 response is -ERR
    When the POP3 client authenticates with AUTH PLAIN as {first}
    Then the POP3 response is +OK

  @rfc1939-8 @rfc2449-8.1.1 @fault-pop3_no_lock @must
  Scenario: A second session on a locked maildrop is refused with [IN-USE]
    Given a POP3 client logged in as {first}
    When a second POP3 client logs in as {first}
    Then the second POP3 login is refused with code IN-USE
    And the POP3 client session continues

  @rfc1939-4 @fault-pop3_no_state_check @must
  Scenario Outline: Maildrop commands are refused before login
    Given a POP3 client ready to log in
    When the POP3 client sends "<command>"
    Then the POP3 response is -ERR

    Examples:
      | command |
      | STAT    |
      | LIST    |
      | NOOP    |

    @needs-pop3-UIDL
    Examples: UIDL is optional (RFC 1939 section 7)
      | command |
      | UIDL    |
