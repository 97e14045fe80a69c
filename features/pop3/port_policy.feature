@pop3
Feature: POP3 ports: STLS on 110, implicit TLS on 995, no credentials in clear text
  RFC 2595 section 4 and RFC 8314: on port 110 a client must upgrade with STLS before it may send
  a password, and the server must not offer USER or SASL before then; port 995 is TLS from the
  first byte. (STLS injection: features/security/starttls.feature.)

  @port-pop3 @rfc2449-5 @rfc2595-4 @needs-pop3-CAPA @fault-pop3_plaintext_auth @fault-pop3_without_tls @security @should
  Scenario: Before STLS, CAPA offers STLS and neither USER nor SASL PLAIN or LOGIN
    Given a POP3 client connected to the pop3 port
    When the POP3 client sends CAPA
    Then the POP3 server advertises STLS
    And the POP3 server does not advertise USER
    And the POP3 server does not advertise SASL PLAIN
    And the POP3 server does not advertise SASL LOGIN

  @port-pop3 @rfc2595-4 @fault-pop3_plaintext_auth @fault-pop3_without_tls @security @should
  Scenario: USER before STLS is refused
    Given a POP3 client connected to the pop3 port
    When the POP3 client sends "USER {first}"
    Then the POP3 response is -ERR

  @port-pop3 @rfc2595-4 @rfc5034-4 @fault-pop3_plaintext_auth @fault-pop3_without_tls @security @should
  Scenario: AUTH PLAIN before STLS is refused, before any credentials are sent
    Given a POP3 client connected to the pop3 port
    When the POP3 client sends "AUTH PLAIN"
    Then the POP3 response is -ERR

  @port-pop3 @rfc2595-4 @needs-pop3-CAPA @fault-starttls_after_tls @fault-pop3_without_tls @must
  Scenario: After STLS, CAPA offers a way to log in and no longer STLS
    Given a POP3 client connected to the pop3 port
    When the POP3 client starts TLS
    And the POP3 client sends CAPA
    Then the POP3 server advertises a way to log in: USER, SASL or APOP
    And the POP3 server does not advertise STLS

  @port-pop3s @rfc8314-3.3 @fault-pop3s_plaintext @must
  Scenario: Port 995 speaks TLS from the first byte
    Then the pop3s port sends no plain-text greeting

  @port-pop3s @rfc8314-3.3 @rfc1939-4 @needs-pop3-CAPA @fault-starttls_after_tls @must
  Scenario: On port 995 the greeting is +OK and CAPA offers a way to log in but not STLS
    Given a POP3 client connected to the pop3s port
    Then the POP3 response is +OK
    When the POP3 client sends CAPA
    Then the POP3 server advertises a way to log in: USER, SASL or APOP
    And the POP3 server does not advertise STLS
