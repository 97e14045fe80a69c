@security @tls
Feature: TLS 1.2 or newer on every TLS port
  RFC 8996 deprecates TLS 1.0 and 1.1 and RFC 8314 section 4.1 asks for TLS 1.2 or later.
  STARTTLS ports are probed after a successful STARTTLS (STLS on 110); ports 465, 995 and 993
  from the first byte.

  @rfc8996-2 @rfc8996-3 @fault-legacy_tls @must
  Scenario Outline: The <role> port refuses TLS <version>
    Then the <role> port refuses a TLS <version> handshake

    @port-smtp @fault-smtp_without_tls
    Examples:
      | role | version |
      | smtp | 1.0     |
      | smtp | 1.1     |

    @port-submission
    Examples:
      | role       | version |
      | submission | 1.0     |
      | submission | 1.1     |

    @port-submissions @fault-submissions_plaintext
    Examples:
      | role        | version |
      | submissions | 1.0     |
      | submissions | 1.1     |

    @port-pop3 @fault-pop3_without_tls
    Examples:
      | role | version |
      | pop3 | 1.0     |
      | pop3 | 1.1     |

    @port-pop3s @fault-pop3s_plaintext
    Examples:
      | role  | version |
      | pop3s | 1.0     |
      | pop3s | 1.1     |

    @port-imap @fault-imap_without_tls
    Examples:
      | role | version |
      | imap | 1.0     |
      | imap | 1.1     |

    @port-imaps @fault-imaps_plaintext
    Examples:
      | role  | version |
      | imaps | 1.0     |
      | imaps | 1.1     |

  @rfc8314-4.1 @must
  Scenario Outline: The <role> port negotiates TLS 1.2 or newer with a certificate the client trusts
    Then the <role> port completes a TLS handshake at version 1.2 or newer

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
