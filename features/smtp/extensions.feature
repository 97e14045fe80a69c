@smtp
Feature: ESMTP extensions: PIPELINING, SIZE, 8BITMIME, SMTPUTF8 and CHUNKING
  Each extension is checked only when the target advertises it in EHLO.

  # The unknown recipient may be refused at RCPT (5yz) or accepted and bounced later (RFC 5321
  # 3.6.2 leaves that to the server); either way its reply comes third, in order.
  @port-smtp @needs-PIPELINING @rfc2920-3.1 @fault-discard_mail @must
  Scenario: A pipelined transaction gets one reply per command, in order
    Given a client connected to the smtp port
    When the client says EHLO
    And the client pipelines:
      """
      MAIL FROM:<{sender}>
      RCPT TO:<{first}>
      RCPT TO:<{unknown}>
      RCPT TO:<{second}>
      DATA
      """
    Then the replies are 250, 250, 5xx/250, 250, 354
    When the client sends the message body:
      """
      Subject: pipelined

      one message, two recipients
      """
    Then the reply code is 250
    And {first} receives the message
    And {second} receives the message

  @port-smtp @needs-SIZE-limit @rfc1870-6.1 @fault-no_size_limit @must
  Scenario: MAIL with a declared SIZE over the limit is refused with 552
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}> SIZE={over_size}"
    Then the reply is 552 5.3.4

  @port-smtp @needs-SIZE-limit @rfc1870-6.3 @fault-no_size_limit @must
  Scenario: A message larger than the advertised SIZE is refused and not delivered
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{first}>"
    And the client sends "DATA"
    Then the reply code is 354
    When the client sends a message body 1 octet over the advertised SIZE
    Then the reply code is 552
    And {first} does not receive the message

  @port-smtp @needs-8BITMIME @rfc6152-3 @fault-strip_8bit @fault-discard_mail @must
  Scenario: An 8-bit message sent with BODY=8BITMIME arrives byte for byte
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}> BODY=8BITMIME"
    Then the reply code is 250
    When the client sends "RCPT TO:<{first}>"
    And the client sends "DATA"
    And the client sends the message body:
      """
      Subject: 8bit
      Content-Type: text/plain; charset=utf-8
      Content-Transfer-Encoding: 8bit

      Grüße aus Köln, ½ € — 日本語
      """
    Then the reply code is 250
    And {first} receives the message exactly as sent

  @port-smtp @needs-SMTPUTF8 @rfc6531-3.4 @fault-strip_8bit @fault-discard_mail @must
  Scenario: An internationalized sender is accepted with SMTPUTF8
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<jörg@bücher.test> SMTPUTF8"
    Then the reply code is 250
    When the client sends "RCPT TO:<{first}>"
    And the client sends "DATA"
    And the client sends the message body:
      """
      From: Jörg <jörg@bücher.test>
      Subject: Grüße

      UTF-8 headers
      """
    Then the reply code is 250
    And {first} receives the message exactly as sent

  @port-smtp @needs-SMTPUTF8 @rfc6531-3.6.1 @fault-utf8_without_smtputf8 @must
  Scenario: An internationalized sender without SMTPUTF8 is refused
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<jörg@bücher.test>"
    Then the reply is a permanent failure

  @port-smtp @needs-CHUNKING @rfc3030-2 @fault-discard_mail @must
  Scenario: A message sent in BDAT chunks arrives byte for byte
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{first}>"
    And the client sends the message in BDAT chunks of 7 octets
      """
      Subject: chunked

      .a line starting with a dot stays as it is in BDAT
      """
    Then the reply code is 250
    And {first} receives the message exactly as sent
