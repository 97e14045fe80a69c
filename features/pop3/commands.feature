@pop3
Feature: POP3 commands in the TRANSACTION state
  RFC 1939 sections 5 and 7: STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET and their -ERR cases.
  Each scenario adds its own messages and looks only at those: the maildrop may hold others.

  @rfc1939-5 @fault-pop3_sizes_without_cr @must
  Scenario: LIST gives each message's exact size and RETR returns that many octets
    Given {first} has 2 new messages
    And a POP3 client logged in as {first}
    Then LIST and RETR agree on the size of every new message
    And RETR returns every new message as it was sent

  @rfc1939-5 @fault-pop3_deleted_visible @must
  Scenario: STAT and LIST agree, and a message marked with DELE leaves both
    Given {first} has 2 new messages
    And a POP3 client logged in as {first}
    Then STAT agrees with LIST
    When the POP3 client deletes new message 1
    Then the POP3 response is +OK
    And STAT agrees with LIST
    And new message 1 is not listed
    And RETR of new message 1 is refused

  @rfc1939-5 @fault-pop3_msgnum_unchecked @must
  Scenario Outline: Commands naming a message that does not exist are refused
    Given a POP3 client logged in as {first}
    When the POP3 client sends "<command>"
    Then the POP3 response is -ERR
    And the POP3 client session continues

    Examples:
      | command               |
      | LIST {beyond-last}    |
      | RETR {beyond-last}    |
      | DELE {beyond-last}    |

    @needs-pop3-TOP
    Examples: TOP is optional (RFC 1939 section 7)
      | command               |
      | TOP {beyond-last} 0   |

    @needs-pop3-UIDL
    Examples: UIDL is optional (RFC 1939 section 7)
      | command               |
      | UIDL {beyond-last}    |

  @rfc1939-5 @fault-pop3_msgnum_unchecked @must
  Scenario: DELE of a message already marked is refused
    Given {first} has 1 new message
    And a POP3 client logged in as {first}
    When the POP3 client deletes new message 1
    Then the POP3 response is +OK
    When the POP3 client deletes new message 1
    Then the POP3 response is -ERR

  @rfc1939-5 @fault-pop3_rset_ignored @must
  Scenario: RSET removes the deletion marks
    Given {first} has 1 new message
    And a POP3 client logged in as {first}
    When the POP3 client deletes new message 1
    And the POP3 client sends "RSET"
    Then the POP3 response is +OK
    And new message 1 is listed
    When the POP3 client quits
    Then all new messages are in {first}'s maildrop

  @rfc1939-7 @needs-pop3-TOP @fault-pop3_top_ignores_lines @must
  Scenario: TOP returns the header, the blank line and the requested number of body lines
    Given {first} has a new message with the body:
      """
      line one
      line two
      line three
      """
    And a POP3 client logged in as {first}
    Then TOP of new message 1 with 2 lines returns its header and "line one", "line two"
    And TOP of new message 1 with 0 lines returns its header only

  @rfc1939-3 @fault-pop3_no_dot_stuffing @must
  Scenario: Lines that begin with a dot come back intact
    Given {first} has a new message with the body:
      """
      .
      ..two dots
      .one dot
      """
    And a POP3 client logged in as {first}
    Then RETR returns every new message as it was sent

  @rfc1939-3 @fault-pop3_unknown_command_ok @must
  Scenario: An unknown command is refused and the session goes on
    Given a POP3 client logged in as {first}
    When the POP3 client sends "XYZZY"
    Then the POP3 response is -ERR
    And the POP3 client session continues

  @rfc2449-6.6 @needs-pop3-PIPELINING @fault-pop3_pipelining_lost @must
  Scenario: Pipelined commands are all answered, in order
    Given {first} has 1 new message
    And a POP3 client logged in as {first}
    When the POP3 client pipelines "NOOP", "STAT", "LIST 1" and "NOOP"
    Then the 4 pipelined responses are all +OK
