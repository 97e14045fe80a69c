@security
Feature: A client cannot keep a connection busy with commands that carry no mail
  A connection that only ever sends NOOP, RSET or VRFY is never idle, so no idle timeout ends
  it, yet it holds one of the server's connection slots and costs work for nothing. MTAs have
  long limited such commands: Postfix counts NOOP, VRFY, ETRN and RSET past 100 as errors
  (smtpd_junk_command_limit), Exim disconnects after 10 non-mail commands
  (smtp_accept_max_nonmail), sendmail slows down after 20 NOOPs (MAXNOOPCOMMANDS). No RFC
  requires this; it is the practice of servers on the Internet. The run passes when the server
  disconnects, answers something other than 250, or slows down (an answer delayed by a second,
  or 250 ms on average) within 200 NOOPs.

  @port-smtp @fault-no_command_limit @should
  Scenario: NOOP after NOOP on the smtp port is cut off or slowed down
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends NOOP again and again
    Then the server cut the attempts off or slowed them down
