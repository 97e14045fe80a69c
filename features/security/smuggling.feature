@security @smtp
Feature: SMTP smuggling: only <CRLF>.<CRLF> ends the message data
  A server that takes another sequence for the end of the data lets a sender hide a second
  message, with forged envelope and headers, inside the first (SMTP smuggling, CVE-2023-51764,
  CVE-2023-51765, CVE-2023-51766). RFC 5321 sections 2.3.8 and 4.1.1.4: the data ends with
  <CRLF>.<CRLF> only. Each vector below is followed by a command; the server must answer the
  whole message once and the command never, whether it keeps the odd octets or refuses the
  message.

  @port-smtp @rfc5321-2.3.8 @rfc5321-4.1.1.4 @must
  Scenario Outline: The smuggling vector <vector> does not end the message
    Given a client connected to the smtp port
    When the client says EHLO
    And the client opens a message transaction for {first}
    Then the reply code is 354
    When the client smuggles "HELP" after the end-of-data vector <vector>
    Then the message data got one reply and the smuggled command none

    @fault-bare_lf_end_of_data
    Examples: bare line ends
      | vector  |
      | LF.LF   |
      | LF.CRLF |
      | CRLF.LF |
      | CR.CR   |
      | CR.CRLF |
      | CR.LF   |
      | CRLF.CR |

    @fault-strip_nul
    Examples: NUL octets next to the dot
      | vector       |
      | CRLF.NULCRLF |
      | CRLFNUL.CRLF |
