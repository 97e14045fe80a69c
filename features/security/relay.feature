@security @relay
Feature: No open relay, whatever the port, the TLS state or the way the address is written
  Without AUTH, port 25 takes mail for the server's own domains only (RFC 5321 3.6.2), and the
  old tricks for sneaking a foreign address past that check must not work (RFC 2505 section
  2.6.1 lists them): the percent hack, bang paths, an `@` hidden in the local part, quoted or
  not, and source routes, which RFC 5321 4.1.1.3 says to ignore. Refusing the address as an
  unknown local user is as good as refusing to relay. A server that takes every local part of
  its domains (a catch-all) fails the tricks that look like a local part: from outside, an
  accepted address that routes elsewhere cannot be told from one delivered locally.

  @port-smtp @rfc2505-2.6.1 @rfc5321-3.6.2 @must
  Scenario Outline: Port 25 without AUTH refuses the foreign recipient written as <form>
    Given a client connected to the smtp port
    When the client says EHLO
    And the client begins mail from {sender}
    And the client sends RCPT for {foreign} written as <form>
    Then the reply is a refusal

    @fault-open_relay
    Examples: the plain address
      | form   |
      | itself |

    @fault-relay_address_tricks @fault-accept_unknown_users
    Examples: addresses in a hosted domain that route elsewhere
      | form                |
      | a percent hack      |
      | a bang path         |
      | a quoted local part |

    @fault-relay_address_tricks
    Examples: an address that is not one
      | form                   |
      | an @ in the local part |

    @fault-relay_address_tricks @fault-open_relay
    Examples: a source route through the server
      | form           |
      | a source route |

  @port-smtp @rfc3207-4.2 @rfc5321-3.6.2 @fault-open_relay @fault-smtp_without_tls @must
  Scenario: Port 25 after STARTTLS, without AUTH, still refuses a foreign recipient
    Given a client connected to the smtp port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{foreign}>"
    Then the reply is a refusal

  @port-submission @rfc6409-4.3 @fault-mail_without_auth @must
  Scenario: Port 587 before STARTTLS takes no mail at all
    Given a client connected to the submission port
    When the client says EHLO
    Then mail from {first} to {second} is refused before DATA
