@relay @relay-env @fault-discard_mail
Feature: Relayed mail is delivered, retried and bounced as RFC 5321 says
  Once a server has said 250 to a message for another domain it is responsible for it
  (RFC 5321 6.1): it retries temporary failures, returns permanent ones to the sender as a
  delivery status notification (RFC 3464), and traces its hop in a Received header. The retry
  scenarios (@relay-retry) wait as long as the target profile says the target takes to retry
  (relay.retry_within_secs); RFC 5321 4.5.4.1 recommends 30 minutes, so without that they are
  skipped.

  @port-submission @rfc5321-4.4 @fault-no_trace_headers @must
  Scenario: The relayed message carries the submission's Received header and no Return-Path
    Given a remote domain whose MX is the harness
    And an authenticated client on the submission port
    When the client sends a message to {remote}
    Then the reply code is 250
    And the harness's MX receives the message within 15 seconds
    And the relayed message starts with the target's Received header for the submission and has no Return-Path

  @port-submission @relay-retry @rfc5321-4.5.4.1 @fault-relay_no_retry @must
  Scenario: A 4xx reply is retried and the message delivered later
    Given a remote domain whose MX is the harness
    And the harness's MX answers "451 4.3.0 try again later" to the first RCPT for the remote recipient
    And an authenticated client on the submission port
    When the client sends a message to {remote}
    Then the reply code is 250
    And the harness's MX receives the message once the target has retried
    And the message was accepted on attempt 2 or later

  @port-submission @relay-retry @rfc6647-2.1 @fault-relay_no_retry @must
  Scenario: A greylisting MX gets the message on a later attempt
    Given a remote domain whose MX is the harness
    And the harness's MX greylists the remote recipient for 2 seconds
    And an authenticated client on the submission port
    When the client sends a message to {remote}
    Then the reply code is 250
    And the harness's MX receives the message once the target has retried
    And the message was accepted on attempt 2 or later

  @port-submission @relay-retry @rfc5321-6.1 @fault-relay_no_retry @must
  Scenario: A connection lost before the reply to the data is retried
    Given a remote domain whose MX is the harness
    And the harness's MX drops the first connection after the message data
    And an authenticated client on the submission port
    When the client sends a message to {remote}
    Then the reply code is 250
    And the harness's MX receives the message once the target has retried
    And the message was accepted on attempt 2 or later

  # RFC 5321 6.1 asks for a notification in no set form; RFC 3461 6 makes it an RFC 3464 report
  # for a server that offers the DSN extension. So a plain-text bounce passes (with a note)
  # unless the submission port lists DSN.
  @port-submission @rfc5321-6.1 @rfc3461-6 @rfc3464-2 @fault-relay_no_bounce @fault-dsn_plain_bounces @must
  Scenario: A 5xx reply from the MX comes back to the sender as a delivery status notification
    Given a remote domain whose MX is the harness
    And the harness's MX answers "550 5.1.1 no such user here" to every RCPT for the remote recipient
    And an authenticated client on the submission port
    When the client sends a message to {remote}
    Then the reply code is 250
    And {first} receives a delivery status notification for the remote recipient within 15 seconds
