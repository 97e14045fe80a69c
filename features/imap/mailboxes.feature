@imap
Feature: IMAP mailboxes: hierarchy, special use, and the errors a client relies on
  RFC 3501 sections 6.3 (CREATE, DELETE, RENAME, LIST wildcards), RFC 6154 (SPECIAL-USE), RFC 3348
  (CHILDREN) and RFC 4315 / RFC 5530 (response codes). Each scenario works in a mailbox of its own.

  @rfc6154-2 @needs-imap-SPECIAL-USE @fault-imap_no_special_use @should
  Scenario: LIST marks the Sent, Drafts, Trash and Junk mailboxes with their special use
    Given an IMAP client logged in as {first}
    When the IMAP client sends "LIST "" *"
    Then the IMAP response is OK
    And LIST shows a mailbox with the attribute \Sent
    And LIST shows a mailbox with the attribute \Drafts
    And LIST shows a mailbox with the attribute \Trash
    And LIST shows a mailbox with the attribute \Junk

  @rfc3501-6.3.8 @rfc3501-6.3.5 @fault-imap_list_no_hierarchy @must
  Scenario: CREATE makes the hierarchy, and LIST with % does not descend into it
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client sends "CREATE {box}/a/b"
    Then the IMAP response is OK
    When the IMAP client sends "LIST "" {box}/%"
    Then LIST shows exactly {box}/a
    When the IMAP client sends "RENAME {box}/a {box}/c"
    And the IMAP client sends "LIST "" {box}/*"
    Then LIST shows exactly {box}/c, {box}/c/b

  @rfc3348-3 @needs-imap-CHILDREN @must @fault-imap_children_wrong
  Scenario: LIST does not call a mailbox with children \HasNoChildren, nor one without \HasChildren
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client sends "CREATE {box}/a/b"
    And the IMAP client sends "LIST "" {box}/*"
    Then LIST shows {box}/a without the attribute \HasNoChildren
    And LIST shows {box}/a/b without the attribute \HasChildren

  @rfc3501-6.3 @rfc4315-3 @fault-imap_errors_as_ok @must
  Scenario Outline: A command that cannot be carried out is refused
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client sends "<command>"
    Then the IMAP response is <status>

    Examples:
      | command                          | status |
      | SELECT {box}/no-such-mailbox     | NO     |
      | CREATE {box}                     | NO     |
      | DELETE INBOX                     | NO     |
      | RENAME {box}/no-such-mailbox {box}/x | NO |
      | FETCH 1 FLAGS                    | BAD    |
      | STATUS {box}/no-such-mailbox (MESSAGES) | NO |
      | EXAMINE {box}/no-such-mailbox    | NO     |
      | CREATE INBOX                     | NO     |
      | STORE 1 +FLAGS (\\Seen)          | BAD    |
      | LOGIN {first} {first-password}   | NO or BAD |
      | UID FETCH 1:* (FLAGS)            | BAD    |

  @rfc3501-6.3.11 @rfc4315-3 @fault-imap_errors_as_ok @must
  Scenario: APPEND to a mailbox that does not exist says TRYCREATE
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client appends a test message to {box}/no-such-mailbox
    Then the IMAP response is NO
    And the IMAP response has the code TRYCREATE

  @rfc3501-7.5 @rfc7888-4 @fault-imap_no_literal_limit @should
  Scenario: A literal larger than the server accepts is refused before it is sent, and the session goes on
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client announces a literal of 4294967295 octets in APPEND to {box}
    Then the IMAP response is NO or BAD
    When the IMAP client sends "NOOP"
    Then the IMAP response is OK

  @rfc3501-6.3.4 @fault-imap_delete_keeps_mailbox @must
  Scenario: DELETE removes a mailbox
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    When the IMAP client sends "CREATE {box}/gone"
    And the IMAP client sends "CREATE {box}/stays"
    And the IMAP client sends "DELETE {box}/gone"
    Then the IMAP response is OK
    When the IMAP client sends "LIST "" {box}/*"
    Then LIST shows exactly {box}/stays

  @rfc3501-6.4.7 @rfc3501-6.4.4 @rfc3501-6.4.1 @rfc4315-3 @fault-imap_errors_as_ok @must
  Scenario: COPY to a missing mailbox says TRYCREATE, SEARCH in an unknown charset says BADCHARSET, CHECK is OK
    Given an IMAP client logged in as {first}
    And the IMAP client uses a new mailbox
    And the new mailbox has 1 message
    When the IMAP client selects the new mailbox
    And the IMAP client sends "COPY 1 {box}/no-such-mailbox"
    Then the IMAP response is NO
    And the IMAP response has the code TRYCREATE
    When the IMAP client sends "SEARCH CHARSET X-NO-SUCH-CHARSET ALL"
    Then the IMAP response is NO
    And the IMAP response has the code BADCHARSET
    When the IMAP client sends "CHECK"
    Then the IMAP response is OK
