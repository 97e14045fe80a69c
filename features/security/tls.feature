@security @tls
Feature: What every TLS port accepts and shows
  Beyond the version (features/tls/versions.feature): BCP 195 (RFC 9325 section 4.1) forbids NULL,
  RC4 and export-grade cipher suites (MUST NOT). An anonymous suite authenticates no server, so
  anyone in the path can read the session, but no RFC forbids one (a warning). The certificate
  should name the server as its clients know it (RFC 7817 section 3, RFC 9525), whether or not the
  client sends that name (SNI, RFC 6066 section 3): mail clients do, many MTAs on port 25 do not.
  STARTTLS ports are probed after a successful STARTTLS (STLS on pop3); the others from the first
  byte. And before TLS on port 143, the capabilities in the greeting must not tell a client less
  about STARTTLS and LOGINDISABLED than CAPABILITY does.

  @rfc9325-4.1 @fault-weak_ciphers @must
  Scenario Outline: The <role> port accepts no NULL, export or RC4 cipher suite
    Then the <role> port accepts no NULL, export or RC4 cipher suite

    @port-smtp @fault-smtp_without_tls
    Examples:
      | role |
      | smtp |

    @port-submission @fault-submission_without_tls
    Examples:
      | role       |
      | submission |

    @port-submissions @fault-submissions_plaintext
    Examples:
      | role        |
      | submissions |

    @port-pop3 @fault-pop3_without_tls
    Examples:
      | role |
      | pop3 |

    @port-pop3s @fault-pop3s_plaintext
    Examples:
      | role  |
      | pop3s |

    @port-imap @fault-imap_without_tls
    Examples:
      | role |
      | imap |

    @port-imaps @fault-imaps_plaintext
    Examples:
      | role  |
      | imaps |

  @rfc9325-4.1 @rfc5246-A.5 @fault-weak_ciphers @should
  # No RFC forbids an anonymous suite outright: RFC 5246 appendix A.5 lets the application
  # ask for one (opportunistic TLS between MTAs, RFC 7435), so accepting one is a warning.
  Scenario Outline: The <role> port accepts no anonymous cipher suite
    Then the <role> port accepts no anonymous cipher suite

    @port-smtp @fault-smtp_without_tls
    Examples:
      | role |
      | smtp |

    @port-submission @fault-submission_without_tls
    Examples:
      | role       |
      | submission |

    @port-submissions @fault-submissions_plaintext
    Examples:
      | role        |
      | submissions |

    @port-pop3 @fault-pop3_without_tls
    Examples:
      | role |
      | pop3 |

    @port-pop3s @fault-pop3s_plaintext
    Examples:
      | role  |
      | pop3s |

    @port-imap @fault-imap_without_tls
    Examples:
      | role |
      | imap |

    @port-imaps @fault-imaps_plaintext
    Examples:
      | role  |
      | imaps |

  @rfc7817-3 @rfc6066-3 @fault-wrong_certificate_name @should
  Scenario Outline: The <role> port shows a certificate for the target's name, with or without SNI
    Then the <role> port shows a certificate valid for the target's name, with and without SNI

    @port-smtp @fault-smtp_without_tls
    Examples:
      | role |
      | smtp |

    @port-submission @fault-submission_without_tls
    Examples:
      | role       |
      | submission |

    @port-submissions @fault-submissions_plaintext
    Examples:
      | role        |
      | submissions |

    @port-pop3 @fault-pop3_without_tls
    Examples:
      | role |
      | pop3 |

    @port-pop3s @fault-pop3s_plaintext
    Examples:
      | role  |
      | pop3s |

    @port-imap @fault-imap_without_tls
    Examples:
      | role |
      | imap |

    @port-imaps @fault-imaps_plaintext
    Examples:
      | role  |
      | imaps |

  @port-imap @rfc3501-7.1 @rfc3501-6.2.3 @fault-imap_greeting_capabilities_stale @must
  Scenario: Before TLS, the imap greeting and CAPABILITY agree about STARTTLS and LOGINDISABLED
    Then the imap port's greeting agrees with CAPABILITY about STARTTLS and LOGINDISABLED
