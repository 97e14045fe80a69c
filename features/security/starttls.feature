@security @tls
Feature: STARTTLS and STLS cannot be turned against the client
  The attacks on STARTTLS that a server can stop ("Why TLS is better without STARTTLS",
  Poddebniak et al., USENIX Security 2021): commands sent in clear text together with STARTTLS
  and executed inside TLS (CVE-2011-0411 and its many successors), replies sent in clear text
  after the go-ahead (where an attacker injects responses), session state that survives the
  upgrade, and a second STARTTLS accepted inside TLS. RFC 3207 section 4.2, RFC 2595
  sections 3.1 and 4, RFC 8314 section 3.3.

  @port-smtp @needs-STARTTLS @rfc3207-5 @fault-starttls_injection @must
  Scenario: Commands sent with STARTTLS before the handshake are not executed
    Given a client connected to the smtp port
    When the client says EHLO
    And the client starts TLS with "HELP" injected
    Then the injected command was not executed

  @port-submission @needs-STARTTLS @rfc3207-5 @fault-starttls_injection @must
  Scenario: Commands sent with STARTTLS on port 587 before the handshake are not executed
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS with "HELP" injected
    Then the injected command was not executed

  @port-pop3 @rfc2595-4 @fault-starttls_injection @must
  Scenario: Commands sent with STLS before the handshake are not executed
    Given a POP3 client connected to the pop3 port
    When the POP3 client starts TLS with "CAPA" injected
    Then the POP3 client receives nothing it did not ask for

  @port-imap @rfc2595-3.1 @fault-starttls_injection @fault-imap_without_tls @must
  Scenario: Commands sent with IMAP STARTTLS before the handshake are not executed
    Given an IMAP client connected to the imap port
    When the IMAP client starts TLS with "x1 CAPABILITY" injected
    Then the IMAP client receives nothing it did not ask for

  @port-smtp @rfc3207-4.2 @helo-required @fault-keep_session_after_starttls @fault-smtp_without_tls @must
  Scenario: STARTTLS resets the session, so EHLO is needed again
    Given a client connected to the smtp port
    When the client says EHLO
    And the client starts TLS
    And the client sends "MAIL FROM:<{sender}>"
    Then the reply is a permanent failure

  @port-smtp @rfc3207-4.2 @fault-starttls_inside_tls @fault-smtp_without_tls @should
  Scenario: A second STARTTLS on port 25 is refused
    Given a client connected to the smtp port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    And the client sends "STARTTLS"
    Then the reply is a refusal

  @port-submissions @rfc8314-3.3 @fault-starttls_inside_tls @fault-submissions_plaintext @should
  Scenario: STARTTLS on port 465 is refused
    Given a client connected to the submissions port
    When the client says EHLO
    And the client sends "STARTTLS"
    Then the reply is a refusal

  @port-pop3 @rfc2595-4 @fault-starttls_inside_tls @fault-pop3_without_tls @should
  Scenario: A second STLS on port 110 is refused
    Given a POP3 client connected to the pop3 port
    When the POP3 client starts TLS
    And the POP3 client sends "STLS"
    Then the POP3 response is -ERR

  @port-pop3s @rfc8314-3.3 @fault-starttls_inside_tls @fault-pop3s_plaintext @should
  Scenario: STLS on port 995 is refused
    Given a POP3 client connected to the pop3s port
    When the POP3 client sends "STLS"
    Then the POP3 response is -ERR

  @port-imap @rfc2595-3.1 @fault-starttls_inside_tls @fault-imap_errors_as_ok @fault-imap_without_tls @should
  Scenario: A second IMAP STARTTLS on port 143 is refused
    Given an IMAP client connected to the imap port
    When the IMAP client starts TLS
    And the IMAP client sends "STARTTLS"
    Then the IMAP response is NO or BAD

  @port-imaps @rfc8314-3.3 @fault-starttls_inside_tls @fault-imap_errors_as_ok @fault-imaps_plaintext @should
  Scenario: IMAP STARTTLS on port 993 is refused
    Given an IMAP client connected to the imaps port
    When the IMAP client sends "STARTTLS"
    Then the IMAP response is NO or BAD

  @port-smtp @needs-STARTTLS @rfc3207-4 @fault-starttls_response_injection @must
  Scenario: Nothing follows the STARTTLS reply in clear text
    Given a client connected to the smtp port
    When the client says EHLO
    And the client starts TLS
    Then the client got nothing in clear text between the STARTTLS reply and the handshake

  @port-pop3 @rfc2595-4 @fault-starttls_response_injection @fault-pop3_without_tls @must
  Scenario: Nothing follows the STLS reply in clear text
    Given a POP3 client connected to the pop3 port
    When the POP3 client starts TLS
    Then the POP3 client got nothing in clear text between the STLS reply and the handshake

  @port-imap @rfc2595-3.1 @fault-starttls_response_injection @fault-imap_without_tls @must
  Scenario: Nothing follows the IMAP STARTTLS reply in clear text
    Given an IMAP client connected to the imap port
    When the IMAP client starts TLS
    Then the IMAP client got nothing in clear text between the STARTTLS reply and the handshake
