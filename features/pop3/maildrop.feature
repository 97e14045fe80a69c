@pop3
Feature: The maildrop across sessions: UPDATE at QUIT only, stable UIDL values
  RFC 1939 section 6 (the UPDATE state) and section 7 (UIDL): deletions happen only when the client
  says QUIT in the TRANSACTION state; a unique-id never changes and is never reused.

  @rfc1939-6 @fault-pop3_dele_ignored @must
  Scenario: DELE and QUIT remove the message, and nothing else
    Given {first} has 2 new messages
    And a POP3 client logged in as {first}
    When the POP3 client deletes new message 1
    And the POP3 client quits
    Then the POP3 response is +OK
    And new message 1 is gone from {first}'s maildrop
    And new message 2 is in {first}'s maildrop

  @rfc1939-6 @fault-pop3_update_on_disconnect @must
  Scenario: A dropped connection deletes nothing
    Given {first} has 1 new message
    And a POP3 client logged in as {first}
    When the POP3 client deletes new message 1
    And the POP3 client drops the connection
    Then all new messages are in {first}'s maildrop

  @rfc1939-7 @needs-pop3-UIDL @fault-pop3_uidl_unstable @must
  Scenario: UIDL values are unique and the same in the next session
    Given {first} has 3 new messages
    And a POP3 client logged in as {first}
    Then the new messages have distinct UIDL values
    When the POP3 client quits
    And a POP3 client logs in again as {first}
    Then the new messages have the same UIDL values as before
