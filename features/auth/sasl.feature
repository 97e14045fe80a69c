@auth
Feature: SMTP AUTH with SASL PLAIN and LOGIN
  RFC 4954 exchanges and error replies, on the submission port after STARTTLS.

  @port-submission @needs-AUTH-LOGIN @rfc4954-4 @fault-no_auth_login @should
  Scenario: AUTH LOGIN succeeds with the right credentials
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    And the client authenticates with LOGIN as the first account
    Then the reply is 235 2.7.0

  @port-submission @rfc4954-4 @fault-lenient_sasl @must
  Scenario: A cancelled exchange gets 501
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    And the client sends "AUTH PLAIN"
    Then the reply code is 334
    When the client sends "*"
    Then the reply code is 501

  @port-submission @rfc4954-4 @fault-lenient_sasl @must
  Scenario: A response that is not base64 gets 501
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    And the client sends "AUTH PLAIN %%%not-base64%%%"
    Then the reply code is 501

  @port-submission @rfc4954-4 @fault-lenient_sasl @must
  Scenario: An unknown mechanism gets 504
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    And the client sends "AUTH X-NO-SUCH-MECHANISM"
    Then the reply code is 504

  @port-submission @rfc4954-4 @fault-reauth_allowed @must
  Scenario: A second AUTH after success gets 503
    Given an authenticated client on the submission port
    When the client authenticates with PLAIN as the first account
    Then the reply code is 503
