@security @tls
Feature: What every TLS port accepts and shows
  Beyond the version (features/tls/versions.feature): BCP 195 (RFC 9325 section 4.1) forbids NULL
  and export-grade cipher suites, and an anonymous suite authenticates no server, so anyone in the
  path can read the session. The certificate must name the server as its clients know it (RFC 7817
  section 3, RFC 9525), whether or not the client sends that name (SNI, RFC 6066 section 3): mail
  clients do, many MTAs on port 25 do not. STARTTLS ports are probed after a successful STARTTLS
  (STLS on pop3); the others from the first byte. And before TLS on port 143, the capabilities in
  the greeting must not tell a client less about STARTTLS and LOGINDISABLED than CAPABILITY does.

  @rfc9325-4.1 @fault-weak_ciphers
  Scenario Outline: The <role> port accepts no anonymous, export or NULL cipher suite
    Then the <role> port accepts no anonymous, export or NULL cipher suite

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

  @rfc7817-3 @rfc6066-3 @fault-wrong_certificate_name
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

  @port-imap @rfc3501-7.1 @rfc3501-6.2.3 @fault-imap_greeting_capabilities_stale
  Scenario: Before TLS, the imap greeting and CAPABILITY agree about STARTTLS and LOGINDISABLED
    Then the imap port's greeting agrees with CAPABILITY about STARTTLS and LOGINDISABLED
