#!/usr/bin/perl
# System calls the shell has no command for, for the mount tests (run as a child process,
# never from the serving process): xattrs, renameat2, lseek SEEK_DATA/SEEK_HOLE, fchmod of
# a descriptor opened read-only. x86-64 syscall numbers. Prints the result, or "ERR NAME".
use strict;
use warnings;
use Fcntl;

my ($cmd, @a) = @ARGV;

sub fail {
  my $n = $! + 0;
  for my $k (keys %!) { if ($!{$k}) { print "ERR $k\n"; exit 0; } }
  print "ERR $n\n";
  exit 0;
}

if ($cmd eq "setxattr") {    # PATH NAME VALUE [create|replace]
  my ($p, $n, $v, $mode) = @a;
  my $flags = !defined $mode ? 0 : $mode eq "create" ? 1 : 2;
  syscall(189, $p, $n, $v, length($v), $flags) == 0 or fail();
  print "ok\n";
} elsif ($cmd eq "getxattr") {    # PATH NAME
  my ($p, $n) = @a;
  my $buf = "\0" x 65536;
  my $r = syscall(192, $p, $n, $buf, 65536);
  $r >= 0 or fail();
  print substr($buf, 0, $r), "\n";
} elsif ($cmd eq "listxattr") {    # PATH
  my $buf = "\0" x 65536;
  my $r = syscall(195, $a[0], $buf, 65536);
  $r >= 0 or fail();
  print join(",", sort grep { length } split(/\0/, substr($buf, 0, $r))), "\n";
} elsif ($cmd eq "removexattr") {    # PATH NAME
  syscall(198, $a[0], $a[1]) == 0 or fail();
  print "ok\n";
} elsif ($cmd eq "rename2") {    # OLD NEW noreplace|exchange
  my $flags = $a[2] eq "noreplace" ? 1 : 2;
  syscall(316, -100, $a[0], -100, $a[1], $flags) == 0 or fail();
  print "ok\n";
} elsif ($cmd eq "seek") {    # PATH OFFSET data|hole
  sysopen(my $fh, $a[0], O_RDONLY) or fail();
  my $r = sysseek($fh, $a[1], $a[2] eq "data" ? 3 : 4);
  defined $r or fail();
  print $r + 0, "\n";
} elsif ($cmd eq "fchmod") {    # PATH MODE(octal): on a descriptor opened read-only
  sysopen(my $fh, $a[0], O_RDONLY) or fail();
  chmod(oct($a[1]), $fh) or fail();
  print "ok\n";
} elsif ($cmd eq "statx") {    # PATH: ino nlink mode uid gid size of the entry itself
  my @s = lstat($a[0]) or fail();
  printf "%d %d %o %d %d %d\n", $s[1], $s[3], $s[2], $s[4], $s[5], $s[7];
} else {
  die "unknown command $cmd\n";
}
