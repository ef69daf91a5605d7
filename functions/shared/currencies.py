"""ISO 4217 alphabetic currency codes in use: what a web-tracking transaction may name.

Source: ISO 4217 "list one" (current currency and funds codes), maintained for ISO by SIX Financial
Information, as shipped in Debian's iso-codes 4.15.0 (``/usr/share/iso-codes/json/iso_4217.json``,
181 codes), brought up to the amendments since: HRK removed (Croatia adopted the euro on
2023-01-01), ZWG added (Zimbabwe Gold, 2024) and XCG added (Caribbean guilder, 2025). Codes in their
phase-out (ANG, CUC, SLL, ZWL) are kept: a late transaction in them is still a transaction. The list
includes the funds codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW), the precious metals (XAU, XAG,
XPD, XPT) and the special codes (XDR, XSU, XUA, XBA-XBD, XTS, XXX), which list one carries as well.
When ISO amends list one, change this set and the test that counts it.
"""

ISO_4217: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN
    BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV
    MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG
    SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN
    UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS
    XUA XXX YER ZAR ZMW ZWG ZWL
    """.split()  # noqa: SIM905 - a block of codes reads and diffs better than 182 quoted strings
)
