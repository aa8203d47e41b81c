"""Dialer adapters: native records of Twilio, VICIdial, FreeSWITCH, Amazon Connect and
Asterisk turned into v1 events, one pure translation module per system."""
