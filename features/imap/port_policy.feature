@imap
Feature: IMAP ports: STARTTLS on 143, implicit TLS on 993, no credentials in clear text
  RFC 3501 sections 6.2.3 and 7.2.1, RFC 2595 section 3.1 and RFC 8314: before STARTTLS on port 143
  the server says LOGINDISABLED, offers no AUTH= mechanism and refuses LOGIN; a wrong password
  is refused. (STARTTLS injection: features/security/starttls.feature.)

  @port-imap @rfc3501-6.2.3 @rfc2595-3.1 @fault-imap_plaintext_login @fault-imap_without_tls @security @should
  Scenario: Before STARTTLS, port 143 says LOGINDISABLED and offers no AUTH= mechanism
    Given an IMAP client connected to the imap port
    When the IMAP client sends "CAPABILITY"
    Then the IMAP server advertises STARTTLS
    And the IMAP server advertises LOGINDISABLED
    And the IMAP server does not advertise AUTH=PLAIN

  @port-imap @rfc3501-6.2.3 @rfc8314-3 @fault-imap_plaintext_login @fault-imap_errors_as_ok @fault-imap_without_tls @security @should
  Scenario: LOGIN with the right password before STARTTLS is refused
    Given an IMAP client connected to the imap port
    When the IMAP client sends "LOGIN {first} {first-password}"
    Then the IMAP response is NO

  @port-imap @rfc2595-3.1 @fault-starttls_after_tls @fault-imap_without_tls @must
  Scenario: After STARTTLS, port 143 offers AUTH=PLAIN and neither STARTTLS nor LOGINDISABLED
    Given an IMAP client connected to the imap port
    When the IMAP client starts TLS
    And the IMAP client sends "CAPABILITY"
    Then the IMAP server advertises AUTH=PLAIN
    And the IMAP server does not advertise STARTTLS
    And the IMAP server does not advertise LOGINDISABLED

  @rfc3501-6.2.3 @rfc5530 @fault-any_password @must
  Scenario: A wrong password is refused
    Given an IMAP client ready to log in
    When the IMAP client logs in as {first} with a wrong password
    Then the IMAP response is NO

  @port-imaps @rfc8314-3.3 @fault-imaps_plaintext @must
  Scenario: Port 993 speaks TLS from the first byte
    Then the imaps port sends no plain-text greeting

  @port-imaps @rfc8314-3.3 @rfc3501-7.1.1 @fault-imaps_plaintext @fault-starttls_after_tls @must
  Scenario: On port 993 the greeting is OK and STARTTLS is not offered
    Given an IMAP client connected to the imaps port
    When the IMAP client sends "CAPABILITY"
    Then the IMAP server does not advertise STARTTLS
    And the IMAP server does not advertise LOGINDISABLED
