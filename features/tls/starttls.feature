@tls
Feature: STARTTLS on port 25
  RFC 3207: the upgrade starts a new session, and nothing sent in clear text before the
  handshake may be executed inside it.

  @port-smtp @needs-STARTTLS @rfc3207-5 @fault-starttls_injection
  Scenario: Commands sent with STARTTLS before the handshake are not executed
    Given a client connected to the smtp port
    When the client says EHLO
    And the client starts TLS with "HELP" injected
    Then the injected command was not executed

  @port-smtp @rfc3207-4.2 @helo-required @fault-keep_session_after_starttls @fault-smtp_without_tls
  Scenario: STARTTLS resets the session, so EHLO is needed again
    Given a client connected to the smtp port
    When the client says EHLO
    And the client starts TLS
    And the client sends "MAIL FROM:<{sender}>"
    Then the reply is a permanent failure
