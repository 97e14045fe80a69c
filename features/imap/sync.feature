@imap
Feature: Several IMAP sessions on one mailbox see each other's changes
  RFC 3501 sections 5.2 and 7: new messages are reported as EXISTS, flag changes as FETCH, expunges
  as EXPUNGE, at the points where the client's message numbers may change (never during FETCH,
  STORE or SEARCH by number). RFC 2177: IDLE reports them while the client waits, with no latency
  set: how soon is measured, and the MUST is that the session is told by the command after DONE.
  RFC 2180 4.1: a message another session expunged stays readable until the session is told (the
  friendliest of the choices there, which clients rely on); a keyword is listed in FLAGS before a
  FETCH shows it.

  @rfc3501-7.4.2 @fault-imap_no_untagged_updates @should
  Scenario: A flag change in one session is reported to the other
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 2 messages
    And a second IMAP client logged in as {first}
    When the IMAP client selects the new mailbox
    And the second IMAP client selects the new mailbox
    And the IMAP client sends "STORE 2 +FLAGS (\Flagged)"
    And the second IMAP client sends "NOOP"
    Then the second IMAP client was told message 2 has the flag \Flagged

  @rfc3501-7.4.1 @fault-imap_no_untagged_updates @fault-imap_exists_without_expunge @fault-imap_vanished_unasked @must
  Scenario: An expunge and a new message in one session are reported to the other
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 2 messages
    And a second IMAP client logged in as {first}
    When the IMAP client selects the new mailbox
    And the second IMAP client selects the new mailbox
    And the IMAP client sends "STORE 1 +FLAGS.SILENT (\Deleted)"
    And the IMAP client sends "EXPUNGE"
    And the IMAP client appends a test message to {box}
    And the second IMAP client sends "NOOP"
    Then the second IMAP client was told message 1 was expunged
    And the second IMAP client was told the mailbox has 2 messages

  @rfc3501-7.4.1 @fault-imap_expunge_during_fetch @fault-imap_no_untagged_updates @fault-imap_exists_without_expunge @fault-imap_vanished_unasked @must
  Scenario: No EXPUNGE while a FETCH by message number runs; it follows at NOOP
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 2 messages
    And a second IMAP client logged in as {first}
    When the IMAP client selects the new mailbox
    And the second IMAP client selects the new mailbox
    And the IMAP client sends "STORE 1 +FLAGS.SILENT (\Deleted)"
    And the IMAP client sends "EXPUNGE"
    And the second IMAP client sends "FETCH 2 FLAGS"
    Then the second IMAP client was not told of any expunge
    When the second IMAP client sends "NOOP"
    Then the second IMAP client was told message 1 was expunged

  @rfc2177 @rfc3501-7.3.1 @needs-imap-IDLE @port-submission @quality @fault-imap_no_untagged_updates @fault-discard_mail
  Scenario: IDLE hears of a message submitted on port 587, and how soon is measured
    Given an IMAP client logged in as {first}
    When the IMAP client sends "SELECT INBOX"
    And the IMAP client starts IDLE
    And {second} submits a message to {first} on the submission port
    Then the IMAP client is told of the new message in IDLE or by the command after DONE, waiting at most 20 seconds

  @rfc3501-7.2.6 @fault-imap_keyword_without_flags @should
  Scenario: A keyword another session sets is listed in FLAGS before a FETCH shows it
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 1 message
    And a second IMAP client logged in as {first}
    When the IMAP client selects the new mailbox
    And the second IMAP client selects the new mailbox
    And the IMAP client sends "STORE 1 +FLAGS ($HarnessLabel)"
    And the second IMAP client sends "FETCH 1 FLAGS"
    And the second IMAP client sends "NOOP"
    Then the IMAP client was shown no keyword before FLAGS listed it
    And the second IMAP client was shown no keyword before FLAGS listed it

  @rfc2180-4.1.1 @fault-imap_fetch_expunged_refused @should
  Scenario: A message another session expunged can still be fetched until the session is told
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 2 messages
    And a second IMAP client logged in as {first}
    When the IMAP client selects the new mailbox
    And the second IMAP client selects the new mailbox
    And the IMAP client sends "STORE 1 +FLAGS.SILENT (\Deleted)"
    And the IMAP client sends "EXPUNGE"
    And the second IMAP client sends "FETCH 1 (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
    Then the second IMAP client could still fetch message 1
