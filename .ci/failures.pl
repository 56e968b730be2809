#!/usr/bin/env perl
# Prints each failed test of the TRX files given as arguments, with the first lines of its message,
# so the tail of a CI log names what failed.
use strict; use warnings;
local $/;
for my $file (@ARGV) {
  open my $fh, '<', $file or next;
  my $xml = <$fh>;
  while ($xml =~ /<UnitTestResult ([^>]*?outcome="Failed"[^>]*?)(\/>|>(.*?)<\/UnitTestResult>)/sg) {
    my ($attrs, $body) = ($1, $3 // '');
    my ($name) = $attrs =~ /testName="([^"]*)"/;
    my ($message) = $body =~ /<Message>(.*?)<\/Message>/s;
    $message = substr($message // '', 0, 800);
    $message =~ s/&lt;/</g; $message =~ s/&gt;/>/g; $message =~ s/&quot;/"/g; $message =~ s/&amp;/&/g;
    print "FAILED $name\n";
    print "  $_\n" for grep { length } split /\n/, $message;
  }
}
