@imap
Feature: IMAP session commands: AUTHENTICATE, LITERAL+, subscriptions, NAMESPACE
  RFC 3501 sections 6.2.2 (AUTHENTICATE) and 6.3.6 to 6.3.9 (SUBSCRIBE, UNSUBSCRIBE, LSUB),
  RFC 4959 (SASL-IR), RFC 7888 (LITERAL+) and RFC 2342 (NAMESPACE).

  @rfc4959 @rfc4616 @needs-imap-SASL-IR @fault-imap_sasl_ir_ignored @must
  Scenario: AUTHENTICATE PLAIN with an initial response logs in without a continuation
    Given an IMAP client ready to log in
    When the IMAP client authenticates as {first} with AUTHENTICATE PLAIN and an initial response
    Then the IMAP response is OK

  @rfc3501-6.2.2 @rfc4616 @fault-any_password @must
  Scenario: AUTHENTICATE PLAIN after a continuation, with a wrong password, is refused
    Given an IMAP client ready to log in
    When the IMAP client authenticates as {first} with AUTHENTICATE PLAIN and a wrong password
    Then the IMAP response is NO

  @rfc7888-4 @needs-imap-LITERAL+ @fault-imap_literal_plus_ignored @must
  Scenario: APPEND with a non-synchronising literal needs no continuation
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client appends a test message to {box} with a non-synchronising literal
    Then the IMAP response is OK
    When the IMAP client sends "STATUS {box} (MESSAGES)"
    Then STATUS says MESSAGES 1

  @rfc3501-6.3.9 @fault-imap_lsub_ignores_subscriptions @must
  Scenario: LSUB lists the subscribed mailboxes and no others
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client sends "CREATE {box}/read"
    And the IMAP client sends "CREATE {box}/unread"
    And the IMAP client sends "SUBSCRIBE {box}/read"
    Then the IMAP response is OK
    When the IMAP client sends "LSUB "" {box}/*"
    Then LSUB shows exactly {box}/read
    When the IMAP client sends "UNSUBSCRIBE {box}/read"
    And the IMAP client sends "LSUB "" {box}/*"
    Then LSUB shows nothing

  @rfc2342 @needs-imap-NAMESPACE @fault-imap_namespace_delimiter_wrong @must
  Scenario: NAMESPACE gives the hierarchy delimiter LIST uses
    Given an IMAP client logged in as {first}
    When the IMAP client sends "NAMESPACE"
    Then the IMAP response is OK
    And NAMESPACE has a personal namespace with the delimiter LIST reports
