@imap @concurrency
Feature: Several clients of one account at work on shared mailboxes at once
  Four clients log in to one account and, for a few seconds (longer on a busy machine, until they
  have completed 1,000 commands, up to five times as long), run a seeded random mix on two
  mailboxes of their own: APPEND with flags and keywords, FETCH and UID FETCH of flags, envelope,
  body structure, whole bodies and sections, STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE, SEARCH,
  STATUS, NOOP, IDLE, and switches between SELECT and EXAMINE. Each client keeps what it has been
  told and holds every response to it: UIDs ascend and are never reused, UIDVALIDITY stays,
  message numbers shift exactly by the EXPUNGEs sent, EXISTS never falls without one, no EXPUNGE
  while a FETCH, STORE or SEARCH by number runs, a UID's size, date and body never change, what
  was APPENDed is what is fetched, MODSEQ only rises, every response parses. Midway and at the
  end all clients stop, poll, and their views must agree. What the server offers is discovered
  (IDLE, MOVE, UIDPLUS, CONDSTORE, LITERAL+, whether keywords may be created, the personal
  namespace); what it lacks is left out of the mix. The two scenarios judge one run, at the
  MUST and at the SHOULD level. `harness load --workload imap-mix` runs the same checks at
  length and at scale.

  @rfc3501-5.2 @rfc3501-7.4.1 @rfc3501-2.3.1.1 @rfc7162-3.1 @must @fault-imap_no_untagged_updates @fault-imap_expunge_during_fetch @fault-imap_uid_reuse @fault-imap_body_changes @fault-imap_modseq_regress @fault-imap_size_without_cr @fault-imap_literal_plus_ignored @fault-imap_expunge_numbers_unshifted @fault-imap_exists_without_expunge @fault-imap_vanished_unasked @fault-imap_status_uidvalidity_wrong @fault-imap_status_uidnext_low @fault-imap_fetch_before_exists @fault-imap_expunge_unannounced @fault-imap_new_messages_unordered @fault-imap_range_end_excluded @fault-imap_append_bare_lf @fault-imap_quoted_unescaped @fault-imap_reversed_range_bad
  Scenario: What each client is told agrees with what the others did
    When 4 IMAP clients of {first} work on shared mailboxes for 3 seconds, each checking what it is told
    Then no client was told anything that breaks a MUST of the RFCs

  @rfc3501-7.2.6 @rfc2180-4.1 @rfc3501-5.2 @should @fault-imap_keyword_without_flags @fault-imap_fetch_expunged_refused @fault-imap_no_untagged_updates @fault-imap_search_beyond_exists @fault-imap_fetch_expunged_empty @fault-imap_expunged_refused
  Scenario: Keywords are announced before use, and messages expunged elsewhere stay usable until reported
    When 4 IMAP clients of {first} work on shared mailboxes for 3 seconds, each checking what it is told
    Then no client was told anything that goes against a SHOULD of the RFCs
