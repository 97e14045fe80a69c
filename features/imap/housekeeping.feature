@imap
Feature: IMAP housekeeping: CLOSE and UNSELECT, UID EXPUNGE, UIDPLUS codes, STATUS, CONDSTORE
  RFC 3501 sections 6.3.10 (STATUS) and 6.4.2 (CLOSE), RFC 3691 (UNSELECT), RFC 4315 (UID EXPUNGE,
  APPENDUID, COPYUID) and RFC 7162 section 3.1.3 (STORE UNCHANGEDSINCE).

  @rfc3501-6.4.2 @fault-imap_close_keeps_deleted @must
  Scenario: CLOSE removes the messages marked \Deleted
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 3 messages
    When the IMAP client selects the new mailbox
    And the IMAP client sends "STORE 1 +FLAGS.SILENT (\Deleted)"
    And the IMAP client sends "CLOSE"
    Then the IMAP response is OK
    When the IMAP client sends "STATUS {box} (MESSAGES)"
    Then STATUS says MESSAGES 2

  @rfc3691-2 @needs-imap-UNSELECT @must @fault-imap_unselect_expunges
  Scenario: UNSELECT leaves the messages marked \Deleted
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 3 messages
    When the IMAP client selects the new mailbox
    And the IMAP client sends "STORE 1 +FLAGS.SILENT (\Deleted)"
    And the IMAP client sends "UNSELECT"
    Then the IMAP response is OK
    When the IMAP client sends "STATUS {box} (MESSAGES)"
    Then STATUS says MESSAGES 3

  @rfc4315-2.1 @needs-imap-UIDPLUS @fault-imap_uid_expunge_all @must
  Scenario: UID EXPUNGE removes only the given messages of those marked \Deleted
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 3 messages
    When the IMAP client selects the new mailbox
    And the IMAP client sends "STORE 1:3 +FLAGS.SILENT (\Deleted)"
    And the IMAP client sends "UID EXPUNGE {uid of message 2}"
    Then the IMAP response is OK
    And the IMAP client was told message 2 was expunged
    When the IMAP client sends "STATUS {box} (MESSAGES)"
    Then STATUS says MESSAGES 2

  @rfc4315-3 @needs-imap-UIDPLUS @fault-imap_no_uidplus_codes @must
  Scenario: APPEND and COPY say which UIDs the new messages got
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client appends a test message to {box}
    Then the IMAP response has the code APPENDUID
    When the IMAP client sends "CREATE {box}/copies"
    And the IMAP client selects the new mailbox
    And the IMAP client sends "COPY 1 {box}/copies"
    Then the IMAP response is OK
    And the IMAP response has the code COPYUID

  @rfc3501-6.3.10 @fault-imap_status_unseen_all @must
  Scenario: STATUS counts the messages and the unseen ones
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 3 messages
    When the IMAP client selects the new mailbox
    And the IMAP client sends "STORE 1 +FLAGS.SILENT (\Seen)"
    And the IMAP client sends "CLOSE"
    And the IMAP client sends "STATUS {box} (MESSAGES UNSEEN)"
    Then STATUS says MESSAGES 3
    And STATUS says UNSEEN 2

  @rfc7162-3.1.3 @needs-imap-CONDSTORE @fault-imap_condstore_ignored @fault-imap_range_end_excluded @must
  Scenario: A conditional STORE leaves alone a message changed since the given mod-sequence
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 2 messages
    When the IMAP client sends "SELECT {box} (CONDSTORE)"
    And the IMAP client remembers the HIGHESTMODSEQ
    And the IMAP client sends "STORE 1 +FLAGS.SILENT (\Seen)"
    And the IMAP client sends "STORE 1:2 (UNCHANGEDSINCE {modseq}) +FLAGS.SILENT (\Flagged)"
    Then the IMAP response is OK
    And the IMAP response has the code MODIFIED
    When the IMAP client sends "FETCH 1:2 (FLAGS)"
    Then message 1 does not have the flag \Flagged
    And message 2 has the flag \Flagged
