@imap
Feature: IMAP messages: byte-exact APPEND and FETCH, flags, MOVE, SEARCH, MIME structure, UIDs
  RFC 3501 sections 6.3.11 (APPEND), 6.4.4 (SEARCH), 6.4.5 (FETCH), 6.4.6 (STORE), 2.3.1.1 (UIDs),
  RFC 6851 (MOVE) and RFC 4315 (UIDPLUS).

  @rfc3501-6.4.5 @fault-imap_size_without_cr @fault-imap_append_bare_lf @must
  Scenario: APPEND then FETCH gives back the same octets, with RFC822.SIZE their exact length
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client appends the round-trip test message to {box}
    Then the IMAP response is OK
    When the IMAP client selects the new mailbox
    Then FETCH of message 1 returns the round-trip test message with its exact size

  @rfc3501-6.4.5 @fault-imap_peek_sets_seen @must
  Scenario: BODY.PEEK[] leaves \Seen alone, BODY[] sets it
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 2 messages
    When the IMAP client selects the new mailbox
    And the IMAP client sends "FETCH 1 BODY.PEEK[]"
    And the IMAP client sends "FETCH 2 BODY[]"
    And the IMAP client sends "FETCH 1:2 FLAGS"
    Then message 1 does not have the flag \Seen
    And message 2 has the flag \Seen

  @rfc3501-6.4.6 @rfc3501-7.1 @fault-imap_store_read_only @must
  Scenario: STORE changes flags and reports them, and a read-only mailbox keeps them
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 1 message
    When the IMAP client selects the new mailbox
    And the IMAP client sends "STORE 1 +FLAGS (\Flagged $Label1)"
    Then the IMAP response is OK
    And message 1 has the flag \Flagged
    And message 1 has the flag $Label1
    When the IMAP client sends "STORE 1 -FLAGS (\Flagged)"
    Then message 1 does not have the flag \Flagged
    When the IMAP client sends "EXAMINE {box}"
    And the IMAP client sends "STORE 1 +FLAGS (\Deleted)"
    Then the STORE was refused with NO, or ignored as PERMANENTFLAGS () allows

  @rfc6851-3 @rfc4315-3 @needs-imap-MOVE @fault-imap_move_keeps_source @must
  Scenario: MOVE puts the message in the other mailbox and expunges it here
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 2 messages
    When the IMAP client sends "CREATE {box}/to"
    And the IMAP client selects the new mailbox
    And the IMAP client sends "UID MOVE 1:* {box}/to"
    Then the IMAP response is OK
    And the IMAP client was told message 1 was expunged
    When the IMAP client sends "STATUS {box} (MESSAGES)"
    Then STATUS says MESSAGES 0
    When the IMAP client sends "STATUS {box}/to (MESSAGES)"
    Then STATUS says MESSAGES 2

  @rfc3501-6.4.4 @fault-imap_search_case_sensitive @must
  Scenario Outline: SEARCH keys find exactly the right messages
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has the search test messages
    When the IMAP client selects the new mailbox
    And the IMAP client sends "SEARCH CHARSET UTF-8 <keys>"
    Then SEARCH finds messages <found>

    Examples:
      | keys                                   | found |
      | SUBJECT "quarterly REPORT"             | 1, 3  |
      | FROM "ALICE"                           | 1     |
      | BODY "invoice" NOT SUBJECT "report"    | 2     |
      | OR SUBJECT "lunch" TEXT "ZÜRICH"       | 2, 3  |
      | HEADER "X-Priority" "" SUBJECT "Report" | 3    |

  @rfc3501-2.3.1.1 @fault-imap_uid_reuse @fault-imap_range_end_excluded @must
  Scenario: UIDs ascend, survive a reconnect, and are never given out again
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 3 messages
    When the IMAP client selects the new mailbox
    And the IMAP client remembers the UIDs and UIDVALIDITY
    And the IMAP client sends "STORE 3 +FLAGS.SILENT (\Deleted)"
    And the IMAP client sends "EXPUNGE"
    And the IMAP client logs out and logs in again as {first}
    And the IMAP client appends a test message to {box}
    And the IMAP client selects the new mailbox
    Then UIDVALIDITY is as before
    And messages 1 and 2 have their UIDs from before
    And message 3 has a UID above every UID from before

  @rfc3501-7.4.2 @fault-imap_bodystructure_flat @must
  Scenario: ENVELOPE and BODYSTRUCTURE describe a multipart message with an attachment
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has the multipart test message
    When the IMAP client selects the new mailbox
    And the IMAP client sends "FETCH 1 (ENVELOPE BODYSTRUCTURE)"
    Then the ENVELOPE has the encoded subject and the sender's address
    And the BODYSTRUCTURE is multipart/mixed of text/plain and an application/pdf attachment

  @rfc3501-6.3.11 @fault-imap_append_ignores_date @should
  Scenario: APPEND keeps the flags and the date it is given
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client appends a test message to {box} with the flag \Flagged and the date "14-Jul-2025 10:30:00 +0200"
    And the IMAP client selects the new mailbox
    And the IMAP client sends "FETCH 1 (FLAGS INTERNALDATE)"
    Then message 1 has the flag \Flagged
    And message 1 has the INTERNALDATE "14-Jul-2025 08:30:00 +0000"

  @rfc3501-6.4.5 @fault-imap_partial_ignored @fault-imap_append_bare_lf @must
  Scenario: FETCH of chosen header fields and of part of the text
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has a message with the body:
      """
      From: someone@example.test
      Subject: Partial test
      X-Other: not asked for

      Hello, partial world.
      """
    When the IMAP client selects the new mailbox
    And the IMAP client sends "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT]<7.7>)"
    Then FETCH gives BODY[HEADER.FIELDS (SUBJECT)] as "Subject: Partial test\r\n\r\n"
    And FETCH gives BODY[TEXT]<7> as "partial"
